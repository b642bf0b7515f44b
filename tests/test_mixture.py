import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_strictly_decreasing, tree_allclose
from hypothesis import given, strategies as st

import spectral_diffusion as sd
from spectral_diffusion._mixture import MIN_GAP


@given(seed=st.integers(0, 99), knots=st.sampled_from([2, 9, 64]))
def test_unconstrained_roundtrip_and_validity(seed, knots):
    rng = np.random.default_rng(seed)
    schedule = 10 - np.cumsum(rng.uniform(0.01, 2, (5, knots)), -1).astype(np.float32)
    u = sd.knots_to_unconstrained(schedule)
    np.testing.assert_allclose(sd.knots_from_unconstrained(u), schedule, rtol=1e-5, atol=1e-4)
    # Any u is a valid schedule (in float32: gaps must stay above the rounding of
    # the knots' magnitude, which logSNR-sized gaps always do).
    assert_strictly_decreasing(
        sd.knots_from_unconstrained(rng.normal(-1, 1, (5, knots)).astype(np.float32))
    )


def test_em_recovers_a_known_mixture():
    rng = np.random.default_rng(0)
    means = np.array([[[0.0, 0.0], [6.0, 3.0]], [[-5.0, 2.0], [1.0, -6.0]]])
    weights = np.array([[0.3, 0.7], [0.5, 0.5]])
    u, labels = [], []
    for c in range(2):
        comp = rng.choice(2, 4000, p=weights[c])
        u.append(means[c][comp] + rng.normal(0, 0.5, (4000, 2)))
        labels.append(np.full(4000, c))
    knots = np.asarray(sd.knots_from_unconstrained(np.concatenate(u)))
    mixture = sd.ScheduleMixture.fit(
        knots, np.concatenate(labels), num_components=2, key=jax.random.key(0)
    )
    for c in range(2):
        order = np.argsort(np.asarray(mixture.means[c, :, 0]))
        truth = np.argsort(means[c, :, 0])
        np.testing.assert_allclose(np.asarray(mixture.means[c])[order], means[c][truth], atol=0.1)
        np.testing.assert_allclose(
            np.exp(np.asarray(mixture.log_weights[c]))[order], weights[c][truth], atol=0.03
        )
        cov = np.asarray(mixture.cholesky[c] @ np.swapaxes(mixture.cholesky[c], -1, -2))
        np.testing.assert_allclose(cov, np.broadcast_to(0.25 * np.eye(2), cov.shape), atol=0.05)


@pytest.fixture(scope="module")
def patch_knots():
    from spectral_diffusion.data import BuiltinPatches

    patches = BuiltinPatches(16, patches_per_image=48, context=64)
    return np.asarray(sd.spectral_schedule(sd.rapsd(patches.images)).knots), patches.labels


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_sampled_schedules_match_the_data(patch_knots, covariance, tmp_path):
    knots, labels = patch_knots
    mixture = sd.ScheduleMixture.fit(
        knots, labels, num_components=2, covariance=covariance, key=jax.random.key(0)
    )
    sampled = mixture.sample(jnp.asarray(np.repeat(labels, 4)), key=jax.random.key(1))
    assert_strictly_decreasing(sampled.knots)
    for column in (0, -1):  # lam(0) and lam(1) marginals
        data, drawn = knots[:, column], np.asarray(sampled.knots[:, column])
        assert abs(drawn.mean() - data.mean()) < 0.15 * data.std() + 0.1
        assert 0.7 < drawn.std() / data.std() < 1.4
    loaded = sd.ScheduleMixture.load(mixture.save(tmp_path / "mixture.npz"))
    assert tree_allclose(
        loaded.sample(jnp.arange(3), key=jax.random.key(2)),
        mixture.sample(jnp.arange(3), key=jax.random.key(2)),
    )


def test_bad_input(tmp_path):
    good = np.tile(np.linspace(5, -5, 8, dtype=np.float32), (10, 1))
    for kwargs, match in [
        (dict(knots=good[:, ::-1]), "strictly decreasing"),
        (dict(knots=np.zeros((0, 8), np.float32)), r"\(N >= 1"),
        (dict(knots=good, labels=np.zeros(3)), "`labels` must have shape"),
        (dict(knots=good, num_components=20), "at least 20 examples"),
        (dict(knots=good, covariance="banded"), "`covariance`"),
    ]:
        with pytest.raises(ValueError, match=match):
            sd.ScheduleMixture.fit(key=jax.random.key(0), **kwargs)
    with pytest.raises(FileNotFoundError):
        sd.ScheduleMixture.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    with pytest.raises(ValueError, match="not a schedule mixture"):
        sd.ScheduleMixture.load(tmp_path / "other.npz")


def test_sampled_gaps_stay_resolvable_in_float32():
    # Gaps of e^-30 nats at λ ≈ 20: float32 cannot tell such knots apart.
    dim = 9
    means = jnp.concatenate([jnp.full((1, 1, 1), 20.0), jnp.full((1, 1, dim - 1), -30.0)], -1)
    mixture = sd.ScheduleMixture(
        log_weights=jnp.zeros((1, 1)),
        means=means,
        cholesky=jnp.eye(dim)[None, None],
        log_likelihood=jnp.zeros(1),
        lower=jnp.full((1, dim), -1e9),
        upper=jnp.full((1, dim), 1e9),
    )
    schedules = mixture.sample(jnp.zeros(64, jnp.int32), key=jax.random.key(0))
    gaps = -jnp.diff(schedules.knots, axis=-1)
    assert schedules.knots.shape == (64, dim)
    assert bool(jnp.all(gaps > 0)) and float(jnp.min(gaps)) >= 0.5 * MIN_GAP


def test_samples_stay_in_the_training_range_of_heavy_tailed_gaps():
    # One gap is a tie-break sliver (e^-9) for half the schedules and ~e^2 nats for the
    # other half: a Gaussian in log-gap space puts mass far beyond both.
    rng = np.random.default_rng(0)
    n, dim = 200, 6
    gaps = np.exp(rng.normal(0.0, 0.1, (n, dim - 1)))
    gaps[:, 2] = np.where(np.arange(n) < n // 2, np.exp(-9.0), np.exp(2.0))
    knots = -10.0 + np.concatenate([np.cumsum(gaps[:, ::-1], 1)[:, ::-1], np.zeros((n, 1))], 1)
    mixture = sd.ScheduleMixture.fit(knots, num_components=1, key=jax.random.key(0))
    sampled = mixture.sample(jnp.zeros(4096, jnp.int32), key=jax.random.key(1)).knots
    u = np.asarray(sd.knots_to_unconstrained(sampled))
    assert np.all(u >= np.asarray(mixture.lower[0]) - 0.05)  # float32 knots
    assert np.all(u <= np.asarray(mixture.upper[0]) + 0.05)
    upper = np.asarray(mixture.upper[0], np.float64)
    assert float(sampled.max()) <= upper[0] + np.exp(upper[1:]).sum() + 1e-3
