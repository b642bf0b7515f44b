"""Spectrally-guided diffusion noise schedules in JAX.

Data flows `spectrum` -> `bounds` -> `schedules` -> (`losses`, `nets`,
`conditioning`) -> `samplers`; the `train` subpackage composes them (import it as
`spectral_diffusion.train`). Every public name is re-exported here (the repeated
`as` name marks it public for type checkers and mkdocstrings).
"""

import importlib.metadata

from . import (
    bounds as bounds,
    conditioning as conditioning,
    data as data,
    gaussian as gaussian,
    losses as losses,
    metrics as metrics,
    nets as nets,
    samplers as samplers,
    schedules as schedules,
    spectrum as spectrum,
)
from ._bounds import (
    BITS as BITS,
    EPS_HI as EPS_HI,
    EPS_LO as EPS_LO,
    logsnr_bounds as logsnr_bounds,
    quantization_noise_power as quantization_noise_power,
)
from ._conditioning import (
    ScheduleMixture as ScheduleMixture,
    from_unconstrained as from_unconstrained,
    to_unconstrained as to_unconstrained,
)
from ._gaussian import GaussianSpectral as GaussianSpectral
from ._losses import (
    EpsLoss as EpsLoss,
    Loss as Loss,
    SigmoidWeighting as SigmoidWeighting,
    VLoss as VLoss,
    WeightedEpsLoss as WeightedEpsLoss,
    batch_loss as batch_loss,
)
from ._nets import (
    Conditioning as Conditioning,
    Denoiser as Denoiser,
    EpsPrediction as EpsPrediction,
    Parameterisation as Parameterisation,
    UNet as UNet,
    UViT as UViT,
    VPrediction as VPrediction,
    XPrediction as XPrediction,
)
from ._proposals import (
    NoiseLevel as NoiseLevel,
    Proposal as Proposal,
    ScheduleProposal as ScheduleProposal,
    TruncatedProposal as TruncatedProposal,
    effective_batch_size as effective_batch_size,
    noise_levels as noise_levels,
)
from ._samplers import (
    TDAS as TDAS,
    FrequencyFilter as FrequencyFilter,
    Guided as Guided,
    ODESolution as ODESolution,
    SpaceFilter as SpaceFilter,
    ddim as ddim,
    estimate_frequency_filter as estimate_frequency_filter,
    guided as guided,
    ode as ode,
    sde as sde,
)
from ._schedules import (
    EDM as EDM,
    Cosine as Cosine,
    InterpolatedCosine as InterpolatedCosine,
    LinearLogSNR as LinearLogSNR,
    PiecewiseLinear as PiecewiseLinear,
    Schedule as Schedule,
    ShiftedCosine as ShiftedCosine,
    global_spectral_schedule as global_spectral_schedule,
    spectral_schedule as spectral_schedule,
)
from ._spectrum import power_spectrum as power_spectrum, radial_bins as radial_bins, rapsd as rapsd


__version__ = importlib.metadata.version("spectral_diffusion")
