"""Diffusion training losses."""

from ._losses import (
    EpsLoss as EpsLoss,
    Loss as Loss,
    SigmoidWeighting as SigmoidWeighting,
    VLoss as VLoss,
    WeightedEpsLoss as WeightedEpsLoss,
    batch_loss as batch_loss,
    schedule_axis as schedule_axis,
)
