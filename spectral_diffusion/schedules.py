"""Noise schedules: the abstract `Schedule`, the baselines and the spectral schedules."""

from ._schedules import (
    EDM as EDM,
    TIE_BREAK_SHARE as TIE_BREAK_SHARE,
    Cosine as Cosine,
    InterpolatedCosine as InterpolatedCosine,
    LinearLogSNR as LinearLogSNR,
    PiecewiseLinear as PiecewiseLinear,
    Schedule as Schedule,
    ShiftedCosine as ShiftedCosine,
    global_spectral_schedule as global_spectral_schedule,
    spectral_schedule as spectral_schedule,
)
