r"""TDAS: target-distribution-aware noise (Ma et al., "Accelerating Score-based
Generative Models for High-Resolution Image Synthesis").

The paper's formulas did not survive in our copy of it; what follows is our
reconstruction from its text, stated on the Samplers page: a radial multi-zone
frequency filter with one suppression rate per zone, a normalised per-pixel space
filter, and zone radii and rates estimated from the frequency statistics of
reference vs generated images.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_finite, check_min_ndim
from .._spectrum import frequency_radii


class FrequencyFilter(eqx.Module):
    r"""Radial frequency filter $R$: noise $\mapsto \operatorname{Re}\,\mathrm{IDFT}(R \odot \mathrm{DFT}(\text{noise}))$.

    $R(k) = 1$ inside the first zone and `rates[j]` from `radii[j]` outward, with
    radii as fractions of the Nyquist radius (radius $R$ of
    [`spectral_diffusion.radial_bins`][]). $R$ depends on $|k|$ only, so it maps real
    noise to real noise and white noise to Gaussian noise with power $R(k)^2$.
    """

    radii: Float[Array, " zones"]
    rates: Float[Array, " zones"]

    def __init__(self, radii: ArrayLike, rates: ArrayLike):
        """**Arguments:**

        - `radii`: increasing zone boundaries in (0, 1] x Nyquist radius.
        - `rates`: positive amplitude factors, one per zone (below 1 suppresses).
        """
        radii, rates = np.asarray(radii, np.float32), np.asarray(rates, np.float32)
        if radii.ndim != 1 or radii.shape != rates.shape:
            raise ValueError(
                f"`radii` and `rates` must be 1-D of equal length, got {radii.shape}, {rates.shape}."
            )
        if np.any(np.diff(radii) <= 0) or np.any(radii <= 0):
            raise ValueError(f"`radii` must be positive and increasing, got {radii}.")
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
        gain = self.gain(*noise.shape[-2:])
        spectrum = jnp.fft.fft2(noise, norm="ortho")
        gain = jnp.broadcast_to(gain, spectrum.shape)
        return jnp.real(jnp.fft.ifft2(gain * spectrum, norm="ortho")).astype(noise.dtype)


class SpaceFilter(eqx.Module):
    r"""Per-pixel noise scale $S$: noise $\mapsto S \odot$ noise."""

    weights: Float[Array, "C H W"]

    def __call__(self, noise: Float[Array, "C H W"]) -> Float[Array, "C H W"]:
        return self.weights * noise

    @classmethod
    def from_images(cls, images: ArrayLike, softness: float = 0.5) -> "SpaceFilter":
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
        if not 0.0 <= softness <= 1.0:
            raise ValueError(f"`softness` must be in [0, 1], got {softness!r}.")
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

    With per-frequency amplitudes $A(k) = \sqrt{\operatorname{mean}|X_k|^2}$ of each
    set, the deviation ratio is $\Phi(k) = A_\text{gen}(k)/A_\text{ref}(k)$. For each
    quantile level $p_j$: the rate is $1/Q_{p_j}(\Phi)$ (undo that level of excess
    amplitude) and the zone starts at the mean radius of the frequencies whose ratio
    reaches $Q_{p_j}(\Phi)$.

    **Arguments:**

    - `reference`: data-set images (or samples of a sampler run at full NFE),
        `(N, C, H, W)`.
    - `generated`: samples of the accelerated sampler, same `(C, H, W)`.
    - `quantiles`: increasing levels in (0, 1).

    **Returns:**

    A [`spectral_diffusion.FrequencyFilter`][].
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

    def amplitude(images):
        images = np.asarray(check_finite(images, "images"), np.float64)
        return np.sqrt(np.mean(np.abs(np.fft.fft2(images, norm="ortho")) ** 2, axis=(0, 1)))

    ratio = amplitude(generated) / np.maximum(amplitude(reference), 1e-12)
    height, width = ratio.shape
    radius = frequency_radii(height, width) / (min(height, width) // 2)
    radii, rates = [], []
    for q in quantiles:
        level = np.quantile(ratio, q)
        radii.append(radius[ratio >= level].mean())
        rates.append(1.0 / level)
    order = np.argsort(radii)
    radii = np.maximum.accumulate(np.asarray(radii)[order])
    # Zones need strictly increasing starts; merge coincident ones into the outer rate.
    keep = np.concatenate([np.diff(radii) > 0, [True]])
    return FrequencyFilter(np.clip(radii[keep], 1e-6, None), np.asarray(rates)[order][keep])
