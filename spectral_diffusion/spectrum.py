"""Power spectra and the radially averaged power spectral density."""

from ._spectrum import (
    RANGE_TOLERANCE as RANGE_TOLERANCE,
    power_spectrum as power_spectrum,
    radial_bins as radial_bins,
    rapsd as rapsd,
)
