"""Sample-quality metrics: Fréchet distances (pixel, spectral, classifier and Inception
features) and KID; held-out denoising error by noise level."""

from ._classifier import PatchClassifier as PatchClassifier, train_classifier as train_classifier
from ._diagnostics import (
    denoising_mse as denoising_mse,
    weighted_denoising_error as weighted_denoising_error,
)
from ._inception import (
    FIDInception as FIDInception,
    load_fid_inception as load_fid_inception,
    load_state_dict as load_state_dict,
)
from ._metrics import (
    GaussianFit as GaussianFit,
    classifier_fd as classifier_fd,
    extract as extract,
    fd as fd,
    fid as fid,
    fit_gaussian as fit_gaussian,
    frechet_distance as frechet_distance,
    kid as kid,
    log_rapsd as log_rapsd,
    pixel_fd as pixel_fd,
    spectral_fd as spectral_fd,
)
