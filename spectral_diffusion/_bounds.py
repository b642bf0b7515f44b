r"""Per-instance bounds on the useful noise levels (SPEC §2)."""

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._checks import as_integer, check_min_ndim, check_nonnegative, check_open_unit
from ._custom_types import RAPSD, IntScalar, RealScalar


#: Default tolerance at the clean end: below the noise level where even the weakest
#: band keeps SNR >= 1/EPS_HI, denoising changes nothing that matters. Library
#: constants, the same for every resolution and data set (chosen on the Gaussian
#: oracle; see the Method page).
EPS_HI = 1e-3
#: Default tolerance at the noisy end: above the noise level where every band has
#: SNR <= EPS_LO, z_t is indistinguishable from N(0, I) to that tolerance.
EPS_LO = 1e-2
#: Default bit depth of the stored data (8-bit images).
BITS = 8


def quantization_noise_power(bits: IntScalar | None) -> float:
    r"""Power of the quantisation noise of data stored with `bits` bits per channel.

    Uniform rounding error with step $\Delta = 2 / (2^\text{bits} - 1)$ (in [-1, 1]
    units) is white with variance $q = \Delta^2 / 12$, hence power $q$ at every
    frequency under the orthonormal DFT. Adding it to a spectrum keeps every bound
    finite, also for a constant image.

    **Arguments:**

    - `bits`: bits per channel (a positive integer), or `None` for no floor.

    **Returns:**

    $q$ as a Python float (`0.0` for `bits=None`).

    **Raises:**

    `ValueError` if `bits` is not a positive integer or `None`.
    """
    if bits is None:
        return 0.0
    bits = as_integer(bits, "bits", 1, alternative=" or None")
    delta = 2.0 / (2.0**bits - 1.0)
    return delta**2 / 12.0


def floored_rapsd(rapsd: ArrayLike, bits: IntScalar | None = BITS) -> RAPSD:
    r"""$\tilde P_b = P_b + q$: a RAPSD with the quantisation floor added, validated.

    **Raises:**

    `ValueError` if `rapsd` is 0-dimensional or has no bins, or holds NaN/inf or
    negative values; an invalid `bits`.
    """
    check_min_ndim(rapsd, "rapsd", 1, "(..., bins)")
    if jnp.shape(rapsd)[-1] < 1:
        raise ValueError(f"`rapsd` must have at least one bin, got shape {jnp.shape(rapsd)}.")
    rapsd = check_nonnegative(rapsd, "rapsd")
    return rapsd + jnp.asarray(quantization_noise_power(bits), rapsd.dtype)


#: Two equal trailing axes at least this long are read as (H, W), not (channels,
#: bins): no data set has 16 or more channels at a RAPSD this short.
IMAGE_LIKE_SIZE = 16


def check_is_spectrum(
    rapsd: ArrayLike, image_size: IntScalar | tuple[IntScalar, IntScalar] | None
) -> None:
    """Refuse what is evidently not a RAPSD: a last axis that does not match the
    given image size, or two trailing image-like axes (images or a 2-D power
    spectrum `(..., H, W)` passed where `(..., bins)` belongs)."""
    shape = np.shape(rapsd)
    if image_size is not None:
        height, width = (image_size, image_size) if np.ndim(image_size) == 0 else image_size
        height, width = as_integer(height, "image_size", 2), as_integer(width, "image_size", 2)
        bins = min(height, width) // 2 + 1
        if not shape or shape[-1] != bins:
            raise ValueError(
                f"`rapsd` of shape {shape} is not the RAPSD of {height}x{width} images: its "
                f"last axis must hold min(H, W) // 2 + 1 = {bins} bins."
            )
    if len(shape) >= 3 and shape[-1] == shape[-2] >= IMAGE_LIKE_SIZE:
        raise ValueError(
            f"`rapsd` of shape {shape} looks like images or a 2-D power spectrum "
            "(..., H, W), not a RAPSD (..., bins): pass `spectral_diffusion.rapsd(x)`."
        )


def logsnr_bounds(
    rapsd: ArrayLike,
    *,
    eps_hi: RealScalar = EPS_HI,
    eps_lo: RealScalar = EPS_LO,
    bits: IntScalar | None = BITS,
    image_size: IntScalar | tuple[IntScalar, IntScalar] | None = None,
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    r"""Tight logSNR bounds of one or many images, from their RAPSD.

    Under the forward process $z_t = \alpha_t x + \sigma_t \epsilon$, band $b$ has
    SNR $e^\lambda \tilde P_b$ with $\tilde P_b = P_b + q$ (quantisation floor). Then

    $$\lambda_\max = -\log \epsilon_\text{hi} - \log \min_b \tilde P_b, \qquad
      \lambda_\min = \log \epsilon_\text{lo} - \log \max_b \tilde P_b:$$

    above $\lambda_\max$ every band keeps SNR $\ge 1/\epsilon_\text{hi}$ (a denoising
    step there changes nothing that matters); below $\lambda_\min$ every band has
    SNR $\le \epsilon_\text{lo}$ ($z_t$ is already indistinguishable from noise).

    **Arguments:**

    - `rapsd`: shape `(..., R + 1)`, from [`spectral_diffusion.rapsd`][].
    - `eps_hi`: tolerance at the clean end, in (0, 1).
    - `eps_lo`: tolerance at the noisy end, in (0, 1).
    - `bits`: bit depth of the data for the quantisation floor
        ([`spectral_diffusion.quantization_noise_power`][]), or `None` for none
        (then a band of zero power gives an infinite bound).
    - `image_size`: optional `size` or `(height, width)` of the images the RAPSD
        came from; given, the number of bins is checked against it.

    **Returns:**

    `(logsnr_min, logsnr_max)`, each of shape `(...)`, with
    `logsnr_max - logsnr_min = log(max P~ / min P~) - log(eps_hi * eps_lo) > 0`.

    **Raises:**

    `ValueError` for `eps_*` outside (0, 1), an invalid `bits`, or a RAPSD that is
    not a finite, non-negative array with at least one bin; for input that is
    evidently not a RAPSD: a bin count that does not match `image_size`, or two
    equal trailing axes of 16 or more (images or a 2-D power spectrum).
    """
    eps_hi = check_open_unit(eps_hi, "eps_hi")
    eps_lo = check_open_unit(eps_lo, "eps_lo")
    check_is_spectrum(rapsd, image_size)
    return bounds_of_floored(floored_rapsd(rapsd, bits), eps_hi, eps_lo)


def bounds_of_floored(
    power: RAPSD, eps_hi: float, eps_lo: float
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    # Python floats (weakly typed) keep float32 power in float32.
    logsnr_max = -math.log(eps_hi) - jnp.log(jnp.min(power, axis=-1))
    logsnr_min = math.log(eps_lo) - jnp.log(jnp.max(power, axis=-1))
    return logsnr_min, logsnr_max
