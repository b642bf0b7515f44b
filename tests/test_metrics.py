import numpy as np
import pytest
import scipy.linalg

import spectral_diffusion as sd
from spectral_diffusion.data import BuiltinPatches
from spectral_diffusion.metrics import GaussianFit


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mean_a, mean_b = rng.normal(size=4), rng.normal(size=4)
    var_a, var_b = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    diagonal = sd.metrics.frechet_distance(
        GaussianFit(mean_a, np.diag(var_a)), GaussianFit(mean_b, np.diag(var_b))
    )
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert diagonal == pytest.approx(expected, rel=1e-10)
    # Non-commuting covariances: the textbook formula with scipy's sqrtm.
    p, q = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    cov_a, cov_b = p @ p.T + 0.1 * np.eye(4), q @ q.T + 0.1 * np.eye(4)
    textbook = np.sum((mean_a - mean_b) ** 2) + np.trace(
        cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real
    )
    assert sd.metrics.frechet_distance(
        GaussianFit(mean_a, cov_a), GaussianFit(mean_b, cov_b)
    ) == pytest.approx(textbook, rel=1e-8)
    assert sd.metrics.frechet_distance(
        GaussianFit(mean_a, cov_a), GaussianFit(mean_a, cov_a)
    ) == pytest.approx(0, abs=1e-9)


def test_fd_is_stable_for_rank_deficient_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 300)), rng.normal(size=(20, 300))  # N << D
    value = sd.metrics.fd(a, b)
    assert np.isfinite(value) and value > 0
    assert sd.metrics.fd(a, a) == pytest.approx(0, abs=1e-6)


def test_sample_space_fd_equals_the_covariance_form():
    rng = np.random.default_rng(3)
    scales = np.linspace(0.2, 2.0, 40)
    a = rng.normal(size=(25, 40)) * scales
    b = rng.normal(size=(30, 40)) + 0.3  # N < D: fd takes the nuclear-norm route
    direct = sd.metrics.frechet_distance(sd.metrics.fit_gaussian(a), sd.metrics.fit_gaussian(b))
    assert sd.metrics.fd(a, b) == pytest.approx(direct, rel=1e-6)
    assert sd.metrics.fd(b, a) == pytest.approx(direct, rel=1e-6)


def test_pixel_fd_of_a_constant_shift():
    x = np.random.default_rng(2).uniform(-0.5, 0.5, (50, 1, 4, 4))
    assert sd.metrics.pixel_fd(x, x + 0.1) == pytest.approx(16 * 0.01, rel=1e-6)


def test_spectral_fd():
    patches = BuiltinPatches(16, patches_per_image=16, context=64).images
    assert sd.metrics.spectral_fd(patches, patches) == pytest.approx(0, abs=1e-6)
    # The RAPSD is blind to flips: so is the spectral FD.
    assert sd.metrics.spectral_fd(patches, patches[..., ::-1]) == pytest.approx(0, abs=1e-5)
    blurred = 0.25 * (
        patches
        + np.roll(patches, 1, -1)
        + np.roll(patches, 1, -2)
        + np.roll(patches, (1, 1), (-2, -1))
    )
    assert sd.metrics.spectral_fd(patches, blurred) > 1.0
    features = sd.metrics.extract(sd.metrics.log_rapsd, patches, batch_size=64)
    assert features.shape == (len(patches), 9) and features.dtype == np.float64


def test_kid():
    rng = np.random.default_rng(3)
    a, b, c = (
        rng.normal(size=(300, 8)),
        rng.normal(size=(300, 8)),
        rng.normal(1.0, 1.0, size=(300, 8)),
    )
    same, spread = sd.metrics.kid(a, b, num_subsets=20, subset_size=100)
    different, _ = sd.metrics.kid(a, c, num_subsets=20, subset_size=100)
    assert abs(same) < 3 * spread + 1e-3
    assert different > 10 * abs(same)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N >= 2, D\)"):
        sd.metrics.fd(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        sd.metrics.fd(np.full((4, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same feature size"):
        sd.metrics.kid(np.zeros((4, 3)), np.zeros((5, 2)))


def test_classifier_features_are_deterministic_cached_and_useful(tmp_path):
    import equinox as eqx
    import jax

    train = BuiltinPatches(16, "train", patches_per_image=48, context=64)
    test = BuiltinPatches(16, "test", patches_per_image=16, context=64)
    first = sd.metrics.train_classifier(
        train.images, train.labels, steps=200, cache_dir=tmp_path / "a"
    )
    again = sd.metrics.train_classifier(
        train.images, train.labels, steps=200, cache_dir=tmp_path / "b"
    )
    leaves = lambda m: jax.tree.leaves(eqx.filter(m, eqx.is_array))  # noqa: E731
    assert all(np.array_equal(x, y) for x, y in zip(leaves(first), leaves(again)))  # deterministic
    assert len(list((tmp_path / "a").glob("classifier-*.eqx"))) == 1
    cached = sd.metrics.train_classifier(
        train.images, train.labels, steps=200, cache_dir=tmp_path / "a"
    )
    assert all(np.array_equal(x, y) for x, y in zip(leaves(first), leaves(cached)))
    accuracy = np.mean(np.argmax(np.asarray(jax.vmap(first)(test.images)), -1) == test.labels)
    assert accuracy > 3 / train.num_classes  # held-out patches: well above chance
    noise = np.clip(np.random.default_rng(0).normal(0, 0.5, test.images.shape), -1, 1).astype(
        np.float32
    )
    assert sd.metrics.classifier_fd(first, test.images, test.images) == pytest.approx(0, abs=1e-6)
    assert sd.metrics.classifier_fd(first, test.images, noise) > sd.metrics.classifier_fd(
        first, train.images, test.images
    )
    with pytest.raises(ValueError, match=r"`images` must be \(N >= 1"):
        sd.metrics.train_classifier(np.zeros((0, 3, 8, 8)), np.zeros(0), cache_dir=tmp_path)
