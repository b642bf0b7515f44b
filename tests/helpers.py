"""Shared test helpers; tolerances are named once here."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest


#: float32 arithmetic on values of order 10-20 (logSNRs).
RTOL = 1e-5
ATOL = 1e-5
#: Looser: inverses and derivatives through transcendental functions in float32.
INVERSE_ATOL = 2e-4

#: Errors raised by a value check inside jit (equinox.error_if).
RUNTIME_ERRORS = (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError)


def tree_allclose(x, y, *, rtol=RTOL, atol=ATOL) -> bool:
    leaves_x, tree_x = jax.tree_util.tree_flatten(x)
    leaves_y, tree_y = jax.tree_util.tree_flatten(y)
    if tree_x != tree_y:
        return False
    return all(
        np.shape(a) == np.shape(b)
        and np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
        for a, b in zip(leaves_x, leaves_y)
    )


def random_images(seed: int, shape, low=-1.0, high=1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def reference_rapsd(x: np.ndarray) -> np.ndarray:
    """SPEC §1 literally: full-plane ortho FFT, round(r) bins, corners dropped (float64)."""
    height, width = x.shape[-2:]
    short = min(height, width)
    ky = np.fft.fftfreq(height) * short
    kx = np.fft.fftfreq(width) * short
    radius = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    bins = np.floor(radius + 0.5).astype(int)
    power = np.abs(np.fft.fft2(x.astype(np.float64), norm="ortho")) ** 2
    return np.stack([power[..., bins == b].mean(-1) for b in range(short // 2 + 1)], -1)


def raises_value_error(match: str):
    return pytest.raises(ValueError, match=match)


def assert_strictly_decreasing(values, axis=-1):
    diffs = np.diff(np.asarray(values), axis=axis)
    assert np.all(diffs < 0), f"not strictly decreasing; max diff {diffs.max()}"


def finite(x) -> bool:
    return bool(jnp.all(jnp.isfinite(jnp.asarray(x))))
