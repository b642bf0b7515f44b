import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RUNTIME_ERRORS, random_images, reference_rapsd, tree_allclose
from hypothesis import given, strategies as st

import spectral_diffusion as sd
from spectral_diffusion import RANGE_TOLERANCE


SHAPES = [(2, 2), (3, 5), (8, 8), (7, 9), (16, 12), (5, 16)]


@given(shape=st.sampled_from(SHAPES), channels=st.sampled_from([1, 3]), seed=st.integers(0, 99))
def test_rapsd_matches_spec_reference(shape, channels, seed):
    x = random_images(seed, (2, channels, *shape))
    expected = reference_rapsd(x)
    np.testing.assert_allclose(sd.rapsd(x, average_channels=False), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sd.rapsd(x), expected.mean(-2), rtol=1e-5, atol=1e-6)


def test_rapsd_shapes_with_leading_axes():
    x = random_images(0, (2, 4, 3, 10, 12))
    assert sd.rapsd(x).shape == (2, 4, 6)
    assert sd.rapsd(x, average_channels=False).shape == (2, 4, 3, 6)
    assert sd.rapsd(x[0, 0]).shape == (6,)
    np.testing.assert_allclose(sd.rapsd(x)[1, 2], sd.rapsd(x[1, 2]), rtol=1e-6)


def test_constant_image_puts_all_power_in_dc():
    c = 0.3
    x = jnp.full((3, 8, 6), c)
    power = sd.rapsd(x)
    np.testing.assert_allclose(power[0], 8 * 6 * c**2, rtol=1e-6)
    np.testing.assert_allclose(power[1:], 0.0, atol=1e-10)


def test_white_noise_has_flat_spectrum_at_its_variance():
    variance = 0.04
    x = np.random.default_rng(1).normal(0, np.sqrt(variance), (64, 3, 32, 32))
    power = np.asarray(sd.rapsd(np.clip(x, -1, 1).astype(np.float32))).mean(0)
    # Each bin from 4 on averages >= 3 * 64 * 24 chi-square(2) draws: a few % noise.
    np.testing.assert_allclose(power[4:], variance, rtol=0.1)


def test_power_spectrum_parseval():
    x = random_images(2, (2, 3, 9, 8))
    np.testing.assert_allclose(
        jnp.sum(sd.power_spectrum(x, value_range=None), axis=(-2, -1)),
        np.sum(x**2, axis=(-2, -1)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("height,width", [(2, 2), (8, 8), (9, 7), (6, 16)])
def test_radial_bins_layout(height, width):
    bins, num_bins = sd.radial_bins(height, width)
    assert bins.shape == (height, width) and num_bins == min(height, width) // 2 + 1
    assert bins[0, 0] == 0
    if max(height, width) <= 2 * min(height, width):
        # DC alone; beyond 2:1 the first long-axis frequencies round into bin 0 too.
        assert np.sum(bins == 0) == 1
    assert set(np.unique(bins[bins >= 0])) == set(range(num_bins))  # no empty bin
    # Conjugate frequencies share a bin (what the half-plane RAPSD relies on).
    mirrored = bins[(-np.arange(height)) % height][:, (-np.arange(width)) % width]
    np.testing.assert_array_equal(bins, mirrored)
    assert not bins.flags.writeable
    assert sd.radial_bins(height, width)[0] is bins  # computed once per shape


def test_radial_bins_drop_corners():
    bins, num_bins = sd.radial_bins(16, 16)
    assert bins[8, 8] == -1  # radius 8 * sqrt(2) > R = 8
    assert num_bins == 9


def test_rapsd_jit_and_vmap_agree_with_eager():
    x = random_images(3, (4, 3, 12, 12))
    eager = sd.rapsd(x)
    assert tree_allclose(jax.jit(sd.rapsd)(x), eager)
    assert tree_allclose(jax.vmap(sd.rapsd)(x), eager)


@pytest.mark.parametrize(
    "x,match",
    [
        (np.full((3, 4, 4), np.nan, np.float32), "NaN or inf"),
        (np.full((3, 4, 4), np.inf, np.float32), "NaN or inf"),
        (np.zeros((4, 4), np.float32), "at least 3 dimensions"),
        (np.full((3, 4, 4), 1.5, np.float32), r"outside \[-1.0, 1.0\]"),
        (np.full((3, 4, 4), 128, np.uint8), "floating-point"),
        (np.zeros((3, 1, 4), np.float32), "`height` must be an integer >= 2"),
    ],
)
def test_rapsd_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        sd.rapsd(x)


def test_rapsd_bad_input_under_jit():
    x = np.zeros((3, 4, 4), np.float32)
    x[0, 0, 0] = np.nan
    with pytest.raises(RUNTIME_ERRORS, match="NaN or inf"):
        jax.block_until_ready(jax.jit(sd.rapsd)(x))


def test_rapsd_range_tolerance_and_opt_out():
    inside = np.full((3, 4, 4), 1 + RANGE_TOLERANCE / 2, np.float32)
    assert np.all(np.isfinite(sd.rapsd(inside)))
    noise = np.full((3, 4, 4), 5.0, np.float32)
    np.testing.assert_allclose(sd.rapsd(noise, value_range=None)[0], 16 * 25.0, rtol=1e-6)


def test_power_spectrum_bad_input():
    with pytest.raises(ValueError, match="`x` contains NaN"):
        sd.power_spectrum(np.array([[np.nan, 0.0], [0.0, 0.0]], np.float32))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        sd.power_spectrum(np.zeros(4, np.float32))


def test_channels_last_and_channelless_images_are_refused():
    from skimage.data import astronaut

    image = np.asarray(astronaut(), np.float32)[:64, :64] / 127.5 - 1  # (H, W, 3)
    for f in (sd.rapsd, sd.power_spectrum):
        with pytest.raises(ValueError, match=r"looks channels-last .*moveaxis\(x, -1, -3\)"):
            f(image)
        with pytest.raises(ValueError, match="0 channels"):
            f(np.zeros((2, 0, 8, 8), np.float32))
    # Transposed as the message says, it is accepted.
    assert sd.rapsd(np.moveaxis(image, -1, -3)).shape == (33,)
