import jax
import numpy as np
import pytest
from helpers import RUNTIME_ERRORS, assert_strictly_decreasing, finite, random_images
from hypothesis import given, strategies as st

import spectral_diffusion as sd
from spectral_diffusion import TIE_BREAK_SHARE


KINDS = ["power", "frequency", "mixed"]
SPACINGS = ["log", "linear"]
IMAGE_SHAPES = [(3, 8, 8), (1, 6, 10), (3, 2, 2)]


def spectra(seed: int, shape) -> np.ndarray:
    return np.asarray(sd.rapsd(random_images(seed, shape)))


def reference_frequency(
    power, t, spacing, eps_hi=1e-3, eps_lo=1e-2, q=sd.quantization_noise_power(8)
):
    """SPEC §3 in float64 numpy, one RAPSD."""
    p = power.astype(np.float64) + q
    top = len(p) - 1
    lo, hi = np.log(eps_lo) - np.log(p.max()), -np.log(eps_hi) - np.log(p.min())
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    crossing = -np.log(envelope)
    r = (top + 1.0) ** (1 - t) - 1 if spacing == "log" else (1 - t) * top
    l_r = np.interp(r, np.arange(top + 1), crossing)
    span = crossing[-1] - crossing[0]
    g = (l_r - crossing[0]) / span if span > 0 else 1 - t  # flat envelope: power progress
    g = (1 - TIE_BREAK_SHARE) * g + TIE_BREAK_SHARE * (1 - t)
    return lo + (hi - lo) * g


@given(
    seed=st.integers(0, 999), shape=st.sampled_from(IMAGE_SHAPES), spacing=st.sampled_from(SPACINGS)
)
def test_frequency_schedule_matches_reference(seed, shape, spacing):
    power = spectra(seed, shape)
    knots = sd.spectral_schedule(power, kind="frequency", spacing=spacing, num_knots=17).knots
    expected = reference_frequency(power, np.linspace(0, 1, 17), spacing)
    np.testing.assert_allclose(knots, expected, atol=2e-4)


@given(
    seed=st.integers(0, 999),
    shape=st.sampled_from(IMAGE_SHAPES),
    kind=st.sampled_from(KINDS),
    spacing=st.sampled_from(SPACINGS),
    num_knots=st.sampled_from([2, 9, 64]),
)
def test_spectral_schedule_properties(seed, shape, kind, spacing, num_knots):
    power = spectra(seed, (2, *shape))
    schedule = sd.spectral_schedule(power, kind=kind, spacing=spacing, num_knots=num_knots)
    knots = np.asarray(schedule.knots)
    assert knots.shape == (2, num_knots)
    assert_strictly_decreasing(knots)
    lo, hi = sd.logsnr_bounds(power)
    # Endpoints are the bounds, exactly.
    np.testing.assert_array_equal(knots[:, 0], hi)
    np.testing.assert_array_equal(knots[:, -1], lo)
    # Every band crosses SNR = 1 inside the schedule's range.
    crossing = -np.log(power + sd.quantization_noise_power(8))
    assert np.all(crossing >= np.asarray(lo)[:, None]) and np.all(
        crossing <= np.asarray(hi)[:, None]
    )


@given(seed=st.integers(0, 999), weight=st.floats(0.0, 1.0), spacing=st.sampled_from(SPACINGS))
def test_mixed_is_weighted_average(seed, weight, spacing):
    power = spectra(seed, (3, 8, 8))
    kwargs = dict(spacing=spacing, num_knots=33)
    f = sd.spectral_schedule(power, kind="frequency", **kwargs).knots
    p = sd.spectral_schedule(power, kind="power", **kwargs).knots
    m = sd.spectral_schedule(power, kind="mixed", weight=weight, **kwargs).knots
    np.testing.assert_allclose(m, weight * f + (1 - weight) * p, atol=1e-5)


def test_power_schedule_is_linear_between_bounds():
    power = spectra(0, (3, 16, 16))
    lo, hi = sd.logsnr_bounds(power)
    s = sd.spectral_schedule(power, kind="power", num_knots=11)
    t = np.linspace(0, 1, 11, dtype=np.float32)
    np.testing.assert_allclose(s.knots, sd.LinearLogSNR(lo, hi).logsnr(t), atol=1e-5)


def test_frequency_schedule_uncovers_fine_bands_first():
    """On a power-law spectrum the frontier band crosses SNR = 1 in order of radius."""
    bins = np.arange(17, dtype=np.float64)
    power = np.concatenate([[100.0], 1.0 / bins[1:] ** 2]).astype(np.float32)
    s = sd.spectral_schedule(power, kind="frequency", spacing="linear", num_knots=17)
    # Linear frontier on 16 bins with 17 knots: knot j sits exactly on bin 16 - j,
    # and the schedule is an increasing affine map of that band's crossing logSNR.
    crossing = -np.log(power.astype(np.float64) + sd.quantization_noise_power(8))[::-1]
    knots = np.asarray(s.knots, np.float64)
    slope = np.diff(knots) / np.diff(crossing)
    np.testing.assert_allclose(slope, slope.mean(), rtol=2e-3)


@pytest.mark.parametrize(
    "image",
    [
        np.full((3, 8, 8), 0.37, np.float32),
        np.zeros((3, 8, 8), np.float32),
        random_images(0, (3, 2, 2)),
        np.where(random_images(1, (3, 8, 8)) > 0, 1.0, -1.0).astype(np.float32),
    ],
    ids=["constant", "zero", "2x2", "plus_minus_one"],
)
@pytest.mark.parametrize("kind", KINDS)
def test_edge_images_give_finite_strict_schedules(image, kind):
    s = sd.spectral_schedule(sd.rapsd(image), kind=kind)
    assert s.knots.dtype == np.float32 and finite(s.knots)
    assert_strictly_decreasing(s.knots)


def test_global_schedule_uses_mean_rapsd():
    power = spectra(3, (5, 3, 8, 8))
    g = sd.global_spectral_schedule(power, kind="frequency", num_knots=9)
    direct = sd.spectral_schedule(power.mean(0), kind="frequency", num_knots=9)
    np.testing.assert_allclose(g.knots, direct.knots, rtol=1e-6)
    assert g.knots.shape == (9,)
    nested = sd.global_spectral_schedule(power.reshape(5, 1, -1))
    np.testing.assert_allclose(nested.knots, sd.global_spectral_schedule(power).knots, rtol=1e-6)


def test_jit_and_vmap_agree():
    power = spectra(4, (3, 3, 8, 8))
    eager = sd.spectral_schedule(power).knots
    jitted = jax.jit(sd.spectral_schedule)(power).knots
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-5)
    vmapped = jax.vmap(lambda p: sd.spectral_schedule(p).knots)(power)
    np.testing.assert_allclose(vmapped, eager, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="cubic"), "`kind` must be one of"),
        (dict(spacing="octave"), "`spacing` must be one of"),
        (dict(weight=1.5), r"`weight` must be a number in \[0, 1\]"),
        (dict(num_knots=1), "`num_knots` must be an integer >= 2"),
        (dict(eps_hi=0.0), "`eps_hi`"),
        (dict(eps_lo=1.0), "`eps_lo`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sd.spectral_schedule(np.ones(5, np.float32), **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match="empty data set"):
        sd.global_spectral_schedule(np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        sd.global_spectral_schedule(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        sd.spectral_schedule(np.array([1.0, np.nan], np.float32))
    with pytest.raises(RUNTIME_ERRORS, match="NaN or inf"):
        jax.block_until_ready(
            jax.jit(sd.spectral_schedule)(np.array([1.0, np.inf], np.float32)).knots
        )
