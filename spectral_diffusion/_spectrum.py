r"""Power spectra and radially averaged power spectral density (RAPSD)."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._checks import (
    as_integer,
    check_channels_first,
    check_finite,
    check_in_range,
    check_min_ndim,
)
from ._custom_types import IntScalar


#: Pixels may exceed [-1, 1] by this much before `rapsd` refuses them: float
#: rounding in a `x / 127.5 - 1` conversion or a resampling filter overshoots by
#: far less, while data in [0, 255] fails loudly.
RANGE_TOLERANCE = 1e-2


def power_spectrum(
    x: ArrayLike, *, value_range: tuple[float, float] | None = (-1.0, 1.0)
) -> Float[Array, "*batch H W"]:
    r"""Per-frequency power $P_k = |X_k|^2$ of the orthonormal 2-D DFT.

    With `norm="ortho"`, white noise of variance $s$ per pixel has expected power
    $s$ at every frequency, so image power and diffusion noise variance are on one
    scale.

    **Arguments:**

    - `x`: array of shape `(..., H, W)`; the transform acts on the last two axes.
    - `value_range`: as in [`spectral_diffusion.rapsd`][]: the range pixels must lie
        in, or `None` to accept any finite values (noise, samples, features).

    **Returns:**

    The power, same shape as `x`, in `numpy.fft.fftfreq` order.

    **Raises:**

    `ValueError` if `x` has fewer than 2 dimensions, looks channels-last (a trailing
    axis of 1, 3 or 4 behind two larger ones), has a non-floating dtype, contains
    NaN/inf or pixels outside `value_range`.
    """
    check_min_ndim(x, "x", 2, "(..., H, W)")
    check_channels_first(x, "x")
    x = check_image_values(x, value_range)
    return jnp.abs(jnp.fft.fft2(x, norm="ortho")) ** 2


def check_image_values(x: ArrayLike, value_range: tuple[float, float] | None) -> Array:
    """A floating array, finite, and in `value_range` (up to `RANGE_TOLERANCE`)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"`x` must be a floating-point image array in [-1, 1], got dtype {x.dtype}."
        )
    if value_range is None:
        return check_finite(x, "x")
    return check_in_range(x, "x", value_range, RANGE_TOLERANCE)


def filter_frequencies(
    x: Float[Array, "*batch H W"], gain: Float[ArrayLike, "*#batch H W"]
) -> Float[Array, "*batch H W"]:
    r"""$\operatorname{Re}\,\mathrm{IDFT}(g \odot \mathrm{DFT}(x))$ over the last two
    axes (orthonormal DFT), for a real per-frequency gain $g$ broadcast to `x`. A gain
    symmetric under $k \to -k$ maps real images to real images exactly."""
    spectrum = jnp.fft.fft2(x, norm="ortho")
    gain = jnp.broadcast_to(gain, x.shape).astype(spectrum.dtype)
    return jnp.real(jnp.fft.ifft2(gain * spectrum, norm="ortho")).astype(x.dtype)


def frequency_radii(height: int, width: int) -> np.ndarray:
    # Integer frequency coordinates rescaled to the short side, so that a
    # non-square image has circular (not elliptical) bins in physical frequency.
    short = min(height, width)
    ky = np.fft.fftfreq(height) * height * short / height
    kx = np.fft.fftfreq(width) * width * short / width
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def radial_bins(height: IntScalar, width: IntScalar) -> tuple[Int[np.ndarray, "H W"], int]:
    r"""Radial bin of every DFT frequency of an `height x width` image.

    With $S = \min(H, W)$, frequency $(k_y, k_x)$ (integers, `fftfreq` order) has
    radius $r = \sqrt{(k_y S/H)^2 + (k_x S/W)^2}$ and bin $b = \mathrm{round}(r)$.
    Bins run over $0..R$ with $R = \lfloor S/2 \rfloor$; frequencies with $b > R$
    (the corners beyond the inscribed circle) belong to no bin and are marked `-1`.

    Computed once per shape with numpy (cached), never traced.

    **Arguments:**

    - `height`, `width`: image size, each at least 2.

    **Returns:**

    `(bins, num_bins)`: a read-only integer array of shape `(height, width)` and
    `num_bins = R + 1`.

    **Raises:**

    `ValueError` for sizes below 2 or non-integers.
    """
    return _radial_bins(as_integer(height, "height", 2), as_integer(width, "width", 2))


@functools.lru_cache(maxsize=64)
def _radial_bins(height: int, width: int) -> tuple[Int[np.ndarray, "H W"], int]:
    num_bins = min(height, width) // 2 + 1
    # np.round halves to even; the spec's round(r) is a plain nearest bin, and
    # radius exactly k + 1/2 cannot occur for integer (ky, kx) on a square grid.
    bins = np.floor(frequency_radii(height, width) + 0.5).astype(np.int32)
    bins[bins >= num_bins] = -1
    bins.setflags(write=False)
    return bins, num_bins


class _HalfPlaneBins(NamedTuple):
    index: np.ndarray  # bin per rfft2 frequency (flattened); num_bins marks "no bin"
    weight: np.ndarray  # 1 or 2: how many full-plane frequencies each one stands for
    count: np.ndarray  # full-plane frequencies per bin


@functools.lru_cache(maxsize=64)
def _half_plane_bins(height: int, width: int) -> _HalfPlaneBins:
    """Radial bins of the half plane kept by `rfft2`.

    A real image has $|X_{-k}| = |X_k|$, and $-k$ falls in the same radial bin as
    $k$, so the full-plane bin mean is a weighted mean over the half plane: columns
    whose mirror lies outside the half plane count twice. Half the FFT, half the
    binning, the same numbers.
    """
    bins, num_bins = radial_bins(height, width)
    half = width // 2 + 1
    multiplicity = np.full(half, 2.0, np.float32)
    multiplicity[0] = 1.0
    if width % 2 == 0:
        multiplicity[-1] = 1.0
    index = bins[:, :half].ravel()
    weight = np.broadcast_to(multiplicity, (height, half)).ravel()
    count = np.bincount(index[index >= 0], weights=weight[index >= 0], minlength=num_bins)
    index = np.where(index >= 0, index, num_bins).astype(np.int32)
    return _HalfPlaneBins(index, weight, count.astype(np.float32))


def rapsd(
    x: ArrayLike,
    *,
    average_channels: bool = True,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
) -> Float[Array, "*batch_or_channels bins"]:
    r"""Radially averaged power spectral density of images.

    $P_b = \operatorname{mean}_{k \in \text{bin } b} |X_k|^2$ with $X$ the orthonormal
    2-D DFT of each channel and bins from
    [`spectral_diffusion.radial_bins`][]; then (by default) averaged over channels.
    The power is per frequency, so a white-noise image of variance $s$ has
    $P_b \approx s$ in every bin and the DC bin holds $H W \bar{x}^2$.

    **Arguments:**

    - `x`: images of shape `(..., C, H, W)` with any leading axes, square or not,
        odd or even sizes (each at least 2), values in `value_range`.
    - `average_channels`: average the spectra over `C` (default) or keep them.
    - `value_range`: the range pixels must lie in (with tolerance
        `RANGE_TOLERANCE`), or `None` to accept any finite values (noise, features).

    **Returns:**

    Shape `(..., R + 1)`, or `(..., C, R + 1)` with `average_channels=False`, where
    `R = min(H, W) // 2`.

    **Raises:**

    `ValueError` for fewer than 3 dimensions, no channels, channels-last-looking
    input (a trailing axis of 1, 3 or 4 behind two larger ones: transpose with
    `jnp.moveaxis(x, -1, -3)`), sizes below 2, non-floating dtypes, NaN/inf, or
    pixels outside `value_range`. Under `jax.jit` the value checks raise through
    `equinox.error_if` instead.
    """
    check_min_ndim(x, "x", 3, "(..., C, H, W)")
    check_channels_first(x, "x")
    x = check_image_values(x, value_range)
    height, width = x.shape[-2:]
    bins = _half_plane_bins(height, width)
    num_bins = len(bins.count)
    spectrum = jnp.fft.rfft2(x, norm="ortho")
    power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
    power = power.reshape(-1, bins.index.size) * bins.weight[None, :]
    # A scatter-add is O(HW) per image and exact on every backend (a dense
    # averaging matmul costs O(HW R) and runs in bfloat16 passes on accelerators).
    # The extra segment collects the corner frequencies that belong to no bin.
    sums = jax.vmap(lambda p: jax.ops.segment_sum(p, bins.index, num_bins + 1))(power)
    out = (sums[:, :num_bins] / bins.count[None, :]).reshape(*x.shape[:-2], num_bins)
    if average_channels:
        out = jnp.mean(out, axis=-2)
    return out
