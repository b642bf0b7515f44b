"""Sample-quality metrics: Fréchet distances (pixel, spectral, any features) and KID."""

from ._classifier import PatchClassifier as PatchClassifier, train_classifier as train_classifier
from ._metrics import (
    GaussianFit as GaussianFit,
    classifier_fd as classifier_fd,
    extract as extract,
    fd as fd,
    fit_gaussian as fit_gaussian,
    frechet_distance as frechet_distance,
    kid as kid,
    log_rapsd as log_rapsd,
    pixel_fd as pixel_fd,
    spectral_fd as spectral_fd,
)
