"""Per-instance bounds on the useful noise levels."""

from ._bounds import (
    BITS as BITS,
    EPS_HI as EPS_HI,
    EPS_LO as EPS_LO,
    logsnr_bounds as logsnr_bounds,
    quantization_noise_power as quantization_noise_power,
)
