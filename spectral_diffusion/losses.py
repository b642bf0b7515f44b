"""Diffusion training losses and the training proposals that draw their noise levels."""

from ._losses import (
    EpsLoss as EpsLoss,
    Loss as Loss,
    SigmoidWeighting as SigmoidWeighting,
    VLoss as VLoss,
    WeightedEpsLoss as WeightedEpsLoss,
    batch_loss as batch_loss,
)
from ._proposals import (
    NoiseLevel as NoiseLevel,
    Proposal as Proposal,
    ScheduleProposal as ScheduleProposal,
    TruncatedProposal as TruncatedProposal,
    effective_batch_size as effective_batch_size,
    noise_levels as noise_levels,
    schedule_axis as schedule_axis,
)
