from ._base import (
    Schedule as Schedule,
    alpha_sigma as alpha_sigma,
    check_num_steps as check_num_steps,
    time_grid as time_grid,
)
from ._cosine import (
    Cosine as Cosine,
    InterpolatedCosine as InterpolatedCosine,
    ShiftedCosine as ShiftedCosine,
)
from ._edm import EDM as EDM
from ._linear import LinearLogSNR as LinearLogSNR, PiecewiseLinear as PiecewiseLinear
from ._spectral import (
    TIE_BREAK_SHARE as TIE_BREAK_SHARE,
    global_spectral_schedule as global_spectral_schedule,
    spectral_schedule as spectral_schedule,
)
