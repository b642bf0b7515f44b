"""The Gaussian oracle: exact denoiser and closed-form sampling error."""

from ._gaussian import GaussianSpectral as GaussianSpectral, spectral_errors as spectral_errors
