import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RUNTIME_ERRORS, finite, random_images
from hypothesis import assume, given, strategies as st

import spectral_diffusion as sd


BIN_COUNTS = [1, 3, 9]
EPS = st.sampled_from([1e-4, 1e-3, 1e-2, 0.1, 0.5])


def random_rapsd(seed: int, shape) -> np.ndarray:
    # Log-uniform over 8 decades, like real spectra from DC down to the floor.
    return (10.0 ** np.random.default_rng(seed).uniform(-7, 1, shape)).astype(np.float32)


def test_quantization_noise_power():
    assert sd.quantization_noise_power(8) == pytest.approx((2 / 255) ** 2 / 12)
    assert sd.quantization_noise_power(1) == pytest.approx(4 / 12)
    assert sd.quantization_noise_power(None) == 0.0
    for bad in (0, -3):
        with pytest.raises(ValueError, match="`bits` must be an integer >= 1 or None"):
            sd.quantization_noise_power(bad)


@given(seed=st.integers(0, 999), bins=st.sampled_from(BIN_COUNTS), eps_hi=EPS, eps_lo=EPS)
def test_bounds_closed_form_and_gap(seed, bins, eps_hi, eps_lo):
    """Property 1: the gap is log(max P~ / min P~) - log(eps_hi eps_lo) > 0."""
    power = random_rapsd(seed, (4, bins))
    lo, hi = sd.logsnr_bounds(power, eps_hi=eps_hi, eps_lo=eps_lo)
    floored = power.astype(np.float64) + sd.quantization_noise_power(8)
    np.testing.assert_allclose(lo, np.log(eps_lo) - np.log(floored.max(-1)), atol=1e-5)
    np.testing.assert_allclose(hi, -np.log(eps_hi) - np.log(floored.min(-1)), atol=1e-5)
    gap = np.log(floored.max(-1) / floored.min(-1)) - np.log(eps_hi * eps_lo)
    np.testing.assert_allclose(hi - lo, gap, atol=1e-4)
    assert np.all(hi - lo > 0)


@given(seed=st.integers(0, 999), bins=st.sampled_from(BIN_COUNTS), bits=st.sampled_from([8, None]))
def test_bounds_monotone_in_power(seed, bins, bits):
    """Property 2: more power in every band lowers (or keeps) both bounds."""
    power = random_rapsd(seed, (bins,))
    more = power + random_rapsd(seed + 1, (bins,)) * (np.arange(bins) % 2)
    lo, hi = sd.logsnr_bounds(power, bits=bits)
    lo_more, hi_more = sd.logsnr_bounds(more, bits=bits)
    assert lo_more <= lo and hi_more <= hi


@given(
    seed=st.integers(0, 999),
    shape=st.sampled_from([(3, 8, 8), (1, 6, 10)]),
    scale=st.floats(0.05, 1.0),
)
def test_bounds_shift_under_scaling(seed, shape, scale):
    """Property 3: scaling the image by c shifts both bounds by -2 log c (no floor)."""
    x = random_images(seed, shape)
    lo, hi = sd.logsnr_bounds(sd.rapsd(x), bits=None)
    lo_c, hi_c = sd.logsnr_bounds(sd.rapsd(scale * x), bits=None)
    np.testing.assert_allclose(lo_c - lo, -2 * math.log(scale), atol=1e-4)
    np.testing.assert_allclose(hi_c - hi, -2 * math.log(scale), atol=1e-4)


@given(seed=st.integers(0, 999), size=st.sampled_from([4, 8]), offset=st.floats(0.2, 0.6))
def test_pixel_replication_lowers_logsnr_min_by_log4(seed, size, offset):
    """Property 4: 2x2 replication multiplies DC power by 4 -> logsnr_min drops log 4."""
    x = offset + 0.3 * random_images(seed, (3, size, size))
    power = np.asarray(sd.power_spectrum(x, value_range=None)).mean(0)
    # The property concerns the DC term: it must be the strongest frequency.
    assume(power[0, 0] > power.ravel()[1:].max())
    upsampled = np.repeat(np.repeat(x, 2, axis=-2), 2, axis=-1)
    lo, _ = sd.logsnr_bounds(sd.rapsd(x), bits=None)
    lo_up, _ = sd.logsnr_bounds(sd.rapsd(upsampled), bits=None)
    np.testing.assert_allclose(lo - lo_up, math.log(4), atol=1e-4)


def test_replication_on_a_photograph_matches_simple_diffusion_shift():
    from spectral_diffusion.data import builtin_images

    x, _ = builtin_images(32, names=["astronaut"])
    up = np.repeat(np.repeat(x, 2, axis=-2), 2, axis=-1)
    lo, _ = sd.logsnr_bounds(sd.rapsd(x))
    lo_up, _ = sd.logsnr_bounds(sd.rapsd(up))
    # Simple diffusion shifts by 2 log(2) per doubling; the floor q barely matters.
    np.testing.assert_allclose(lo - lo_up, 2 * math.log(2), atol=1e-3)


@pytest.mark.parametrize(
    "image",
    [
        np.full((3, 8, 8), 0.37, np.float32),  # constant
        np.zeros((3, 8, 8), np.float32),  # all zero
        random_images(0, (3, 2, 2)),  # 2 x 2
        np.where(random_images(1, (3, 8, 8)) > 0, 1.0, -1.0).astype(np.float32),  # +-1
        np.ones((1, 5, 7), np.float32),
    ],
)
def test_bounds_finite_float32_on_edge_images(image):
    lo, hi = sd.logsnr_bounds(sd.rapsd(image))
    assert lo.dtype == jnp.float32 and hi.dtype == jnp.float32
    assert finite(lo) and finite(hi) and hi > lo


def test_bounds_batched_jit_vmap():
    power = random_rapsd(0, (2, 5, 7))
    lo, hi = sd.logsnr_bounds(power)
    assert lo.shape == hi.shape == (2, 5)
    lo_j, hi_j = jax.jit(sd.logsnr_bounds)(power)
    lo_v, hi_v = jax.vmap(sd.logsnr_bounds)(power)
    np.testing.assert_allclose(lo_j, lo, rtol=1e-6)
    np.testing.assert_allclose(hi_v, hi, rtol=1e-6)


@pytest.mark.parametrize("name", ["eps_hi", "eps_lo"])
@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 2.0])
def test_bounds_reject_bad_eps(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        sd.logsnr_bounds(np.ones(4, np.float32), **{name: value})


@pytest.mark.parametrize(
    "power,match",
    [
        (np.array([1.0, np.nan], np.float32), "NaN or inf"),
        (np.array([1.0, -1.0], np.float32), "non-negative"),
        (np.float32(1.0), "at least 1 dimensions"),
        (np.zeros((3, 0), np.float32), "at least one bin"),
    ],
)
def test_bounds_reject_bad_rapsd(power, match):
    with pytest.raises(ValueError, match=match):
        sd.logsnr_bounds(power)


def test_bounds_runtime_error_under_jit():
    with pytest.raises(RUNTIME_ERRORS, match="non-negative"):
        jax.block_until_ready(jax.jit(sd.logsnr_bounds)(np.array([1.0, -1.0], np.float32)))
