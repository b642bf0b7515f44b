"""Schedules optimised on the Gaussian oracle: better than every heuristic, correct
gradients, the theory's answer on a white spectrum, batched and vmapped."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_diffusion as sd
from spectral_diffusion.data import builtin_images


SIZE = 16


@pytest.fixture(scope="module")
def photographs():
    images, _ = builtin_images(SIZE, ["astronaut", "coffee"])
    return jnp.asarray(images)


@pytest.fixture(scope="module")
def oracle(photographs):
    return sd.GaussianSpectral.from_image(photographs[0])


def builtin_schedules(photographs) -> dict[str, sd.Schedule]:
    power = sd.rapsd(photographs[:1])
    spectral = {
        kind: sd.PiecewiseLinear(sd.spectral_schedule(power, kind=kind).knots[0])
        for kind in ("power", "frequency", "mixed")
    }
    return {
        "cosine": sd.Cosine(),
        "shifted_cosine": sd.ShiftedCosine(SIZE, base=64),
        "interpolated_cosine": sd.InterpolatedCosine(SIZE, low=8),
        "edm": sd.EDM(),
        "global_spectral": sd.global_spectral_schedule(power),
        **spectral,
    }


@pytest.mark.parametrize(("sampler", "metric"), [("ddim", "kl"), ("ddpm", "w2")])
def test_optimum_beats_its_initialisation_and_every_builtin_schedule(
    oracle, photographs, sampler, metric
):
    num_steps = 8
    options = dict(sampler=sampler, metric=metric)
    optimum = sd.optimal_schedule(oracle, num_steps, **options)
    assert optimum.knots.shape == (num_steps + 1,)
    best = float(sd.schedule_error(oracle, optimum, num_steps, **options))
    for name, schedule in builtin_schedules(photographs).items():
        error = float(sd.schedule_error(oracle, schedule, num_steps, **options))
        assert best <= error, (name, best, error)
    # Never worse than a start of the user's choosing, even a good one.
    spectral = builtin_schedules(photographs)["power"]
    start = sd.optimal_schedule(oracle, num_steps, init=spectral, steps=20, **options)
    assert float(sd.schedule_error(oracle, start, num_steps, **options)) <= float(
        sd.schedule_error(oracle, spectral, num_steps, **options)
    )


def test_schedule_error_is_the_closed_form_error(oracle):
    schedule = sd.EDM()
    errors = oracle.ddim_error(schedule, 8)
    assert float(sd.schedule_error(oracle, schedule, 8, metric="kl")) == pytest.approx(
        float(errors["kl"]), rel=1e-5
    )
    # The default, KL + W2, and the same as a mapping.
    total = float(errors["kl"] + errors["w2"])
    assert float(sd.schedule_error(oracle, schedule, 8)) == pytest.approx(total, rel=1e-5)
    as_mapping = sd.schedule_error(oracle, schedule, 8, metric={"w2": 1, "kl": 1})
    assert float(as_mapping) == pytest.approx(total, rel=1e-5)
    mixed = sd.schedule_error(oracle, schedule, 8, sampler="ddpm", metric={"kl": 1, "w2": 2})
    errors = oracle.ancestral_error(schedule, 8)
    assert float(mixed) == pytest.approx(float(errors["kl"] + 2 * errors["w2"]), rel=1e-5)


def test_gradient_agrees_with_finite_differences(oracle):
    num_steps = 6
    u = sd.knots_to_unconstrained(sd.PiecewiseLinear.on_grid(sd.EDM(), num_steps).knots)

    def log_error(u):
        schedule = sd.PiecewiseLinear(sd.knots_from_unconstrained(u))
        return jnp.log(sd.schedule_error(oracle, schedule, num_steps, metric={"kl": 1, "w2": 1}))

    grad = jax.grad(log_error)(u)
    assert jnp.all(jnp.isfinite(grad))
    for seed in range(3):
        direction = jax.random.normal(jax.random.key(seed), u.shape)
        h = 1e-2
        numeric = (log_error(u + h * direction) - log_error(u - h * direction)) / (2 * h)
        assert float(jnp.dot(grad, direction)) == pytest.approx(float(numeric), rel=2e-2, abs=1e-3)


def test_closed_forms_stay_finite_at_extreme_knots(oracle):
    knots = jnp.array([1000.0, 30.0, 0.0, -30.0, -1000.0])

    def error(knots):
        return sd.schedule_error(
            sd.GaussianSpectral(oracle.variances), sd.PiecewiseLinear(knots), 4
        )

    for sampler in ("ddim", "ddpm"):
        value, grad = jax.value_and_grad(
            lambda k: sd.schedule_error(oracle, sd.PiecewiseLinear(k), 4, sampler=sampler)
        )(knots)
        assert jnp.isfinite(value) and jnp.all(jnp.isfinite(grad)), sampler
    assert jnp.isfinite(error(knots))


@pytest.mark.parametrize("level", [0.25, 4.0])
def test_white_spectrum_reaches_zero_error_where_theory_says(level):
    # Every band is the same 1-D Gaussian N(0, s). One DDIM step from pure noise to
    # logSNR l returns z / alpha(l) with variance sigma^2 / alpha^2 = exp(-l): exact
    # when l = -log s. So the optimum puts lambda(0) at -log s with (nearly) zero error,
    # where the cosine schedule's error is large. (Exactly so for lambda(1) -> -inf;
    # from EDM's start lambda(1) stays near -9, which moves the optimum by < 0.1.)
    oracle = sd.GaussianSpectral(jnp.full((3, 4, 4), level))
    optimum = sd.optimal_schedule(oracle, 1)
    assert float(optimum.knots[0]) == pytest.approx(-np.log(level), abs=0.1)
    assert float(sd.schedule_error(oracle, optimum, 1)) < 1e-3
    assert float(sd.schedule_error(oracle, sd.Cosine(), 1)) > 1.0


def test_batched_oracle_and_vmap_give_one_optimum_per_spectrum(photographs):
    oracles = jax.vmap(sd.GaussianSpectral.from_image)(photographs)
    batched = sd.optimal_schedule(oracles, 4, steps=50)
    assert batched.knots.shape == (2, 5)
    vmapped = jax.vmap(lambda o: sd.optimal_schedule(o, 4, steps=50).knots)(oracles)
    one = sd.optimal_schedule(sd.GaussianSpectral(oracles.variances[1]), 4, steps=50)
    np.testing.assert_allclose(batched.knots, vmapped, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batched.knots[1], one.knots, rtol=1e-4, atol=1e-4)
    # Different spectra, different optima.
    assert not np.allclose(batched.knots[0], batched.knots[1], atol=1e-2)


def test_fewer_knots_and_no_steps(oracle):
    fewer = sd.optimal_schedule(oracle, 8, num_knots=3, steps=50)
    assert fewer.knots.shape == (3,)
    start = sd.optimal_schedule(oracle, 8, steps=0)
    np.testing.assert_allclose(
        start.knots, sd.PiecewiseLinear.on_grid(sd.EDM(), 8).knots, rtol=1e-5, atol=1e-4
    )


def test_band_summary_keeps_the_sums_and_the_error():
    images, _ = builtin_images(64, ["astronaut"])
    oracle = sd.GaussianSpectral.from_image(jnp.asarray(images[0]))
    values, weights = sd.band_summary(oracle.variances, 256)
    assert values.shape == weights.shape == (256,)
    assert float(jnp.sum(weights)) == oracle.variances.size
    assert float(jnp.sum(weights * values)) == pytest.approx(float(jnp.sum(oracle.variances)), 1e-4)
    # A summarised optimum is as good as a full one, on the exact error.
    full = sd.optimal_schedule(oracle, 8, bands=None, steps=100)
    summary = sd.optimal_schedule(oracle, 8, bands=256, steps=100)
    exact = [float(sd.schedule_error(oracle, s, 8)) for s in (full, summary)]
    assert exact[1] == pytest.approx(exact[0], rel=2e-2)


def test_fixed_ends_keep_the_end_points_and_batched_inits(oracle, photographs):
    num_steps = 8
    power = sd.rapsd(photographs)
    spectral = sd.spectral_schedule(power)  # one schedule per image
    oracles = jax.vmap(sd.GaussianSpectral.from_image)(photographs)
    inside = sd.optimal_schedule(oracles, num_steps, init=spectral, fix_ends=True, steps=100)
    start = sd.PiecewiseLinear.on_grid(spectral, num_steps).knots
    np.testing.assert_allclose(inside.knots[:, [0, -1]], start[:, [0, -1]], rtol=1e-5, atol=1e-4)
    for i in range(2):
        one = sd.GaussianSpectral(oracles.variances[i])
        before = sd.schedule_error(one, sd.PiecewiseLinear(start[i]), num_steps)
        after = sd.schedule_error(one, sd.PiecewiseLinear(inside.knots[i]), num_steps)
        free = sd.optimal_schedule(one, num_steps)
        # Better than the start, and (with two fewer degrees of freedom) no better than
        # the free optimum.
        assert float(after) < float(before)
        assert float(sd.schedule_error(one, free, num_steps)) <= float(after) * 1.01
    with pytest.raises(ValueError, match="`init` must be None or a Schedule"):
        sd.optimal_schedule(oracle, num_steps, init=spectral)  # batched init, one oracle
