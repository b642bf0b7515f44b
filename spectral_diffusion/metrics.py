"""Sample-quality metrics: Fréchet distances (pixel, spectral, any features) and KID."""

from ._metrics import (
    GaussianFit as GaussianFit,
    extract as extract,
    fd as fd,
    fit_gaussian as fit_gaussian,
    frechet_distance as frechet_distance,
    kid as kid,
    log_rapsd as log_rapsd,
    pixel_fd as pixel_fd,
    spectral_fd as spectral_fd,
)
