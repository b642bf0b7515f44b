"""Spectrally-guided diffusion noise schedules in JAX.

Data flows spectrum -> bounds -> schedules -> (nets, losses, proposals, mixtures)
-> samplers -> Gaussian oracle; `spectral_diffusion.train` composes them into a
training run, `spectral_diffusion.data` feeds it and `spectral_diffusion.metrics`
scores the samples. Those three are subpackages because they carry their own
dependencies (grain, orbax, the classifier and Inception networks); every other
public name has exactly one path, `spectral_diffusion.X`, re-exported here (the
repeated `as` name marks it public for type checkers and mkdocstrings). See the
Architecture page of the docs for what each private module owns.
"""

import importlib.metadata

from . import data as data, metrics as metrics
from ._bounds import (
    BITS as BITS,
    EPS_HI as EPS_HI,
    EPS_LO as EPS_LO,
    logsnr_bounds as logsnr_bounds,
    quantization_noise_power as quantization_noise_power,
)
from ._gaussian import GaussianSpectral as GaussianSpectral, spectral_errors as spectral_errors
from ._losses import (
    EpsLoss as EpsLoss,
    Loss as Loss,
    SigmoidWeighting as SigmoidWeighting,
    VLoss as VLoss,
    WeightedEpsLoss as WeightedEpsLoss,
    batch_loss as batch_loss,
)
from ._mixture import (
    ScheduleMixture as ScheduleMixture,
    knots_from_unconstrained as knots_from_unconstrained,
    knots_to_unconstrained as knots_to_unconstrained,
)
from ._nets import (
    Conditioning as Conditioning,
    Denoiser as Denoiser,
    EpsPrediction as EpsPrediction,
    NullClass as NullClass,
    Parameterisation as Parameterisation,
    UNet as UNet,
    UViT as UViT,
    VPrediction as VPrediction,
    XPrediction as XPrediction,
)
from ._optimal import (
    DEFAULT_METRIC as DEFAULT_METRIC,
    OPTIMAL_METRICS as OPTIMAL_METRICS,
    OPTIMAL_SAMPLERS as OPTIMAL_SAMPLERS,
    band_summary as band_summary,
    optimal_schedule as optimal_schedule,
    schedule_error as schedule_error,
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
from ._samplers import (
    TDAS as TDAS,
    DenoiseFn as DenoiseFn,
    FrequencyFilter as FrequencyFilter,
    Guided as Guided,
    NoiseFilter as NoiseFilter,
    SampleStats as SampleStats,
    SpaceFilter as SpaceFilter,
    ddim as ddim,
    estimate_frequency_filter as estimate_frequency_filter,
    guided as guided,
    ode as ode,
    sde as sde,
)
from ._schedules import (
    EDM as EDM,
    TIE_BREAK_SHARE as TIE_BREAK_SHARE,
    Cosine as Cosine,
    InterpolatedCosine as InterpolatedCosine,
    LinearLogSNR as LinearLogSNR,
    PiecewiseLinear as PiecewiseLinear,
    Schedule as Schedule,
    ShiftedCosine as ShiftedCosine,
    alpha_sigma as alpha_sigma,
    global_spectral_schedule as global_spectral_schedule,
    spectral_schedule as spectral_schedule,
    time_grid as time_grid,
)
from ._spectrum import (
    RANGE_TOLERANCE as RANGE_TOLERANCE,
    power_spectrum as power_spectrum,
    radial_bins as radial_bins,
    rapsd as rapsd,
)


__version__ = importlib.metadata.version("spectral_diffusion")
