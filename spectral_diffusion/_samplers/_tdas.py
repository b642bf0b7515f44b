r"""TDAS: target-distribution-aware noise (Ma et al., "Accelerating Score-based
Generative Models for High-Resolution Image Synthesis").

The paper's formulas did not survive in our copy of it; what follows is our
reconstruction from its text, stated on the Samplers page: a radial multi-zone
frequency filter with one suppression rate per zone, a normalised per-pixel space
filter, and zone radii and rates estimated from the frequency statistics of
reference vs generated images.
"""

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_real, check_finite, check_min_ndim, concrete_bool
from .._custom_types import RealScalar
from .._spectrum import filter_frequencies, frequency_radii, rapsd


class FrequencyFilter(eqx.Module):
    r"""Radial frequency filter $R$:
    noise $\mapsto \operatorname{Re}\,\mathrm{IDFT}(R \odot \mathrm{DFT}(\text{noise}))$.

    $R(k) = 1$ inside the first zone and `rates[j]` from `radii[j]` outward, with
    radii as fractions of the Nyquist radius (radius $R$ of
    [`spectral_diffusion.radial_bins`][]). $R$ depends on $|k|$ only, so it maps real
    noise to real noise and white noise to Gaussian noise with power $R(k)^2$.
    """

    radii: Float[Array, " zones"]
    rates: Float[Array, " zones"]

    def __init__(self, radii: Sequence[float] | ArrayLike, rates: Sequence[float] | ArrayLike):
        r"""**Arguments:**

        - `radii`: increasing zone boundaries as fractions of the Nyquist radius
            (positive; corner frequencies reach $\sqrt 2$).
        - `rates`: positive amplitude factors, one per zone (below 1 suppresses).
        """
        radii, rates = np.asarray(radii, np.float32), np.asarray(rates, np.float32)
        if radii.ndim != 1 or radii.shape != rates.shape:
            raise ValueError(
                "`radii` and `rates` must be 1-D of equal length, "
                f"got {radii.shape} and {rates.shape}."
            )
        if not np.all(np.isfinite(radii)) or np.any(np.diff(radii) <= 0) or np.any(radii <= 0):
            raise ValueError(f"`radii` must be finite, positive and increasing, got {radii}.")
        if np.any(rates <= 0) or not np.all(np.isfinite(rates)):
            raise ValueError(f"`rates` must be positive and finite, got {rates}.")
        self.radii = jnp.asarray(radii)
        self.rates = jnp.asarray(rates)

    def gain(self, height: int, width: int) -> Float[Array, "H W"]:
        """$R(k)$ on the `fftfreq` grid of an `height x width` image."""
        radius = frequency_radii(height, width) / (min(height, width) // 2)
        gain = jnp.ones((height, width), self.rates.dtype)
        for j in range(self.radii.shape[0]):
            gain = jnp.where(radius >= self.radii[j], self.rates[j], gain)
        return gain

    def __call__(self, noise: Float[Array, "*batch H W"]) -> Float[Array, "*batch H W"]:
        return filter_frequencies(noise, self.gain(*noise.shape[-2:]))


class SpaceFilter(eqx.Module):
    r"""Per-pixel noise scale $S$: noise $\mapsto S \odot$ noise."""

    weights: Float[Array, "C H W"]

    def __check_init__(self):
        if np.ndim(self.weights) != 3:
            raise ValueError(f"`weights` must have shape (C, H, W), got {np.shape(self.weights)}.")
        bad = ~jnp.all(jnp.isfinite(self.weights) & (self.weights >= 0))
        if concrete_bool(bad):
            raise ValueError("`weights` must be finite and non-negative.")

    def __call__(self, noise: Float[Array, "C H W"]) -> Float[Array, "C H W"]:
        return self.weights * noise

    @classmethod
    def from_images(cls, images: ArrayLike, softness: RealScalar = 0.5) -> "SpaceFilter":
        r"""The data set's per-pixel RMS, softened and normalised.

        $S = (1 - \gamma) + \gamma\,\tilde S$ with $\tilde S$ the per-pixel RMS of
        `images` scaled to unit mean square and $\gamma$ = `softness`, then scaled again
        to unit mean square, so the filtered noise keeps its total variance.

        **Arguments:**

        - `images`: `(N, C, H, W)`, at least one image.
        - `softness`: $\gamma \in [0, 1]$; 0 gives the identity.
        """
        check_min_ndim(images, "images", 4, "(N, C, H, W)")
        images = check_finite(images, "images")
        if images.shape[0] == 0:
            raise ValueError("`images` is an empty data set.")
        softness = as_real(softness, "softness", low=0.0, high=1.0)
        rms = jnp.sqrt(jnp.mean(images**2, axis=0))
        rms = rms / jnp.sqrt(jnp.mean(rms**2) + 1e-12)
        weights = (1.0 - softness) + softness * rms
        return cls(weights / jnp.sqrt(jnp.mean(weights**2)))


class TDAS(eqx.Module):
    """A TDAS noise filter: the space filter, then the frequency filter.

    Pass it as `noise_filter=` to a sampler: it shapes the initial sample and every
    injected noise. Either part may be `None`; with both `None` it is the identity.
    """

    frequency: FrequencyFilter | None = None
    space: SpaceFilter | None = None

    def __check_init__(self):
        for name, value, kind in (
            ("frequency", self.frequency, FrequencyFilter),
            ("space", self.space, SpaceFilter),
        ):
            if value is not None and not isinstance(value, kind):
                raise ValueError(
                    f"`{name}` must be a spectral_diffusion.{kind.__name__} or None, "
                    f"got {type(value).__name__}."
                )

    def __call__(self, noise: Float[Array, "C H W"]) -> Float[Array, "C H W"]:
        if self.space is not None:
            noise = self.space(noise)
        if self.frequency is not None:
            noise = self.frequency(noise)
        return noise


#: Quantile levels of the deviation ratio that define the "middle" and "high" zones.
TDAS_QUANTILES = (0.5, 0.9)


def estimate_frequency_filter(
    reference: ArrayLike, generated: ArrayLike, quantiles: tuple[float, ...] = TDAS_QUANTILES
) -> FrequencyFilter:
    r"""TDAS's automatic frequency-filter estimate from reference and generated images.

    The deviation ratio is the radial profile of generated over reference amplitude,
    $\Phi_b = \sqrt{P^\text{gen}_b / P^\text{ref}_b}$ from the mean RAPSDs of the two
    sets. For each quantile level $p_j$ the deviation level is
    $Q_j = Q_{p_j}(\Phi)$ over the bins; zone $j$ starts at the first radius where
    $\Phi_b$ is halfway from no deviation to it, $\Phi_b \ge (1 + Q_j)/2$ (robust to
    noise and exact on a step), and scales amplitudes there by $1/Q_j$, undoing that
    level of excess. (Our reconstruction of the paper's rule: its formulas did not survive in
    our copy; see the Samplers page.)

    **Arguments:**

    - `reference`: data-set images (or samples of a sampler run at full NFE),
        `(N, C, H, W)`.
    - `generated`: samples of the accelerated sampler, same `(C, H, W)`.
    - `quantiles`: increasing levels in (0, 1).

    **Returns:**

    A [`spectral_diffusion.FrequencyFilter`][].

    **Raises:**

    `ValueError` for empty or mismatched image sets, NaN/inf, or bad quantiles.
    """
    for name, images in (("reference", reference), ("generated", generated)):
        check_min_ndim(images, name, 4, "(N, C, H, W)")
        if np.shape(images)[0] == 0:
            raise ValueError(f"`{name}` is an empty data set.")
    if np.shape(reference)[1:] != np.shape(generated)[1:]:
        raise ValueError(
            f"`reference` and `generated` must share (C, H, W), got {np.shape(reference)[1:]} "
            f"and {np.shape(generated)[1:]}."
        )
    if any(not 0 < q < 1 for q in quantiles) or list(quantiles) != sorted(set(quantiles)):
        raise ValueError(f"`quantiles` must be increasing levels in (0, 1), got {quantiles}.")

    def profile(images):
        return np.mean(np.asarray(rapsd(images, value_range=None), np.float64), axis=0)

    ratio = np.sqrt(profile(generated) / np.maximum(profile(reference), 1e-30))
    radius = np.arange(len(ratio)) / (len(ratio) - 1)
    levels = np.quantile(ratio, quantiles)
    starts = np.array([radius[np.argmax(ratio >= 0.5 * (1.0 + level))] for level in levels])
    # Zones need strictly increasing, positive starts; coincident ones merge into the
    # outer (stronger) rate.
    keep = np.concatenate([np.diff(starts) > 0, [True]]) & (starts > 0)
    if not np.any(keep):
        return FrequencyFilter([1.0], [1.0])  # no excess anywhere but DC: identity
    return FrequencyFilter(starts[keep], 1.0 / levels[keep])
