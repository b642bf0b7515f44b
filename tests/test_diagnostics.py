"""Held-out denoising error by noise level, on denoisers with known errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import raises_value_error

import spectral_diffusion as sd


IMAGES = np.random.default_rng(0).uniform(-1, 1, (7, 3, 8, 8)).astype(np.float32)
COND = sd.Conditioning(np.arange(7) % 3, np.full(7, 12.0), np.full(7, -9.0))
LOGSNRS = np.array([-4.0, 0.0, 3.0])


def rescale(z, lam, cond):
    """x_hat = z / alpha: its error is exactly (sigma / alpha)^2 eps^2 = e^-lam eps^2."""
    return z / jnp.sqrt(jax.nn.sigmoid(lam))


def test_errors_are_exact_for_known_denoisers():
    key = jax.random.key(3)
    mse = sd.metrics.denoising_mse(rescale, IMAGES, COND, LOGSNRS, key=key, batch_size=3)
    assert mse.shape == (3, 7)
    # Common noise: the same eps at every lambda (and for every denoiser).
    eps = np.asarray(jax.random.normal(key, IMAGES.shape), np.float64)
    expected = np.exp(-LOGSNRS)[:, None] * (eps**2).mean(axis=(1, 2, 3))[None]
    np.testing.assert_allclose(mse, expected, rtol=1e-4)
    zero = sd.metrics.denoising_mse(
        lambda z, lam, cond: jnp.zeros_like(z), IMAGES, COND, LOGSNRS, key=key
    )
    expected = np.broadcast_to((IMAGES**2).mean(axis=(1, 2, 3)), (3, 7))
    np.testing.assert_allclose(zero, expected, rtol=1e-6)


def test_each_image_gets_its_own_conditioning():
    def by_label(z, lam, cond):
        return jnp.zeros_like(z) + cond.label.astype(z.dtype) + cond.logsnr_1

    mse = sd.metrics.denoising_mse(by_label, IMAGES, COND, LOGSNRS, key=jax.random.key(0))
    expected = ((np.arange(7) % 3 - 9.0)[:, None, None, None] - IMAGES) ** 2
    np.testing.assert_allclose(mse[0], expected.mean(axis=(1, 2, 3)), rtol=1e-5)


def test_weighted_error():
    grid = np.linspace(-10.0, 8.0, 2001)
    # Constant MSE 1: J = log(1 + e^8) - log(1 + e^-10).
    exact = np.log1p(np.exp(8.0)) - np.log1p(np.exp(-10.0))
    assert sd.metrics.weighted_denoising_error(grid, np.ones_like(grid)) == pytest.approx(
        exact, rel=1e-6
    )
    with raises_value_error("equal 1-D grids"):
        sd.metrics.weighted_denoising_error(grid, np.ones(3))


def test_bad_input():
    with raises_value_error("images"):
        sd.metrics.denoising_mse(rescale, IMAGES[0], COND, LOGSNRS, key=jax.random.key(0))
    with raises_value_error("NaN"):
        sd.metrics.denoising_mse(rescale, IMAGES * np.nan, COND, LOGSNRS, key=jax.random.key(0))
    with raises_value_error("logsnrs"):
        sd.metrics.denoising_mse(
            rescale, IMAGES, COND, np.array([0.0, np.inf]), key=jax.random.key(0)
        )
