r"""Held-out denoising error by noise level: what a trained denoiser has learned, per
logSNR, separately from how a sampler uses it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, PRNGKeyArray

from ._checks import check_finite
from ._nets import Conditioning
from ._schedules import alpha_sigma


@eqx.filter_jit
def _batch_mse(denoise, images, cond, noise, lam):
    alpha, sigma = alpha_sigma(lam)

    def one(x, cond, eps):
        return jnp.mean((denoise(alpha * x + sigma * eps, lam, cond) - x) ** 2)

    return jax.vmap(one)(images, cond, noise)


def denoising_mse(
    denoise,
    images: ArrayLike,
    cond: Conditioning,
    logsnrs: ArrayLike,
    *,
    key: PRNGKeyArray,
    batch_size: int = 100,
) -> Float[np.ndarray, "L N"]:
    r"""The x-prediction error $\|\hat x(z_\lambda) - x\|^2$ (mean over pixels) of every
    image at every logSNR, with common noise.

    $z_\lambda = \alpha x + \sigma\epsilon$ with one $\epsilon$ per image drawn from
    `key` and reused at every $\lambda$ (and by every denoiser given the same key), so
    differences between $\lambda$ values or between denoisers are not sampling noise.

    **Arguments:**

    - `denoise`: `denoise(z, lam, cond) -> x_hat` for one example (a
        [`spectral_diffusion.Denoiser`][]).
    - `images`: `(N, C, H, W)` held-out images.
    - `cond`: a [`spectral_diffusion.Conditioning`][] with fields of shape `(N,)`: the
        conditioning each image gets (its label and its schedule's end points).
    - `logsnrs`: the $\lambda$ grid, shape `(L,)`.
    - `key`: the noise.
    - `batch_size`: images per jitted call (one compilation for all of them; the last
        batch is padded).

    **Returns:**

    `(L, N)` float64 errors.
    """
    images = np.asarray(check_finite(images, "images"), np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty (N, C, H, W) array, got {images.shape}.")
    logsnrs = np.asarray(check_finite(logsnrs, "logsnrs"), np.float32).reshape(-1)
    count = len(images)
    noise = np.asarray(jax.random.normal(key, images.shape, jnp.float32))
    cond = Conditioning(*(np.broadcast_to(np.asarray(c), (count,)) for c in cond))
    out = np.zeros((len(logsnrs), count))
    for start in range(0, count, batch_size):
        index = np.arange(start, start + batch_size) % count  # padded with the first ones
        part = Conditioning(*(c[index] for c in cond))
        for row, lam in enumerate(logsnrs):
            errors = _batch_mse(denoise, images[index], part, noise[index], jnp.float32(lam))
            kept = min(batch_size, count - start)
            out[row, start : start + kept] = np.asarray(errors)[:kept]
    return out


def weighted_denoising_error(logsnrs: ArrayLike, mse: ArrayLike) -> float:
    r"""$J = \int \operatorname{sigmoid}(\lambda)\, \mathrm{MSE}_x(\lambda)\, d\lambda$
    over the grid (trapezoid rule).

    $\operatorname{sigmoid}(\lambda)\,\mathrm{MSE}_x = w(\lambda)\,\mathrm{MSE}_\epsilon$
    for the sigmoid weighting $w(\lambda) = \operatorname{sigmoid}(-\lambda)$ (bias 0),
    so $J$ is twice the Kingma-Gao weighted loss restricted to the grid: one number
    for how well a denoiser denoises across the noise levels that matter.
    """
    logsnrs = np.asarray(logsnrs, np.float64)
    mse = np.asarray(mse, np.float64)
    if logsnrs.shape != mse.shape or logsnrs.ndim != 1 or len(logsnrs) < 2:
        raise ValueError(
            f"`logsnrs` and `mse` must be equal 1-D grids of >= 2 values, got {logsnrs.shape} "
            f"and {mse.shape}."
        )
    values = mse / (1.0 + np.exp(-logsnrs))
    return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(logsnrs)))
