import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import INVERSE_ATOL, RUNTIME_ERRORS, assert_strictly_decreasing, tree_allclose
from hypothesis import given, strategies as st

import spectral_diffusion as sd
from spectral_diffusion._checks import fail_if


def random_knots(seed: int, shape) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.05, 2.0, shape)
    start = rng.uniform(5.0, 20.0, shape[:-1] + (1,))
    return (
        start - np.concatenate([np.zeros_like(start), np.cumsum(gaps, -1)[..., :-1]], -1)
    ).astype(np.float32)


SCHEDULES = {
    "cosine": sd.Cosine(),
    "cosine_narrow": sd.Cosine(-5.0, 7.0),
    "shifted_cosine": sd.ShiftedCosine(256, base=64),
    "interpolated_cosine": sd.InterpolatedCosine(256, low=32),
    "edm": sd.EDM(),
    "linear": sd.LinearLogSNR(-10.0, 12.0),
    "piecewise": sd.PiecewiseLinear(random_knots(0, (9,))),
}
ALL = pytest.mark.parametrize("schedule", list(SCHEDULES.values()), ids=list(SCHEDULES))
T = np.linspace(0.0, 1.0, 2001, dtype=np.float32)
# Away from the knots of the piecewise schedule (K = 8) and from the ends.
T_SMOOTH = ((np.arange(8) + 0.37) / 8).astype(np.float32)


@ALL
def test_strictly_decreasing(schedule):
    assert_strictly_decreasing(schedule.logsnr(T))
    assert np.all(np.asarray(schedule.dlogsnr_dt(T)) < 0)


@ALL
def test_inverse(schedule):
    t = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    np.testing.assert_allclose(schedule.t_of_logsnr(schedule.logsnr(t)), t, atol=INVERSE_ATOL)


@ALL
def test_derivative_matches_autodiff(schedule):
    autodiff = jax.vmap(jax.grad(lambda t: schedule.logsnr(t)))(T_SMOOTH)
    np.testing.assert_allclose(schedule.dlogsnr_dt(T_SMOOTH), autodiff, rtol=1e-3)


@ALL
def test_alpha_sigma_variance_preserving(schedule):
    alpha, sigma = schedule.alpha_sigma(T)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
    lam = schedule.logsnr(T)
    np.testing.assert_allclose(2 * jnp.log(alpha) - 2 * jnp.log(sigma), lam, atol=1e-3)


@ALL
def test_jit_and_shapes(schedule):
    t = np.linspace(0.0, 1.0, 6, dtype=np.float32).reshape(2, 3)
    jitted = eqx.filter_jit(lambda s, t: (s.logsnr(t), s.dlogsnr_dt(t), s.t_of_logsnr(s.logsnr(t))))
    eager = (schedule.logsnr(t), schedule.dlogsnr_dt(t), schedule.t_of_logsnr(schedule.logsnr(t)))
    assert tree_allclose(jitted(schedule, t), eager, atol=1e-5)
    assert schedule.logsnr(t).shape == (2, 3)
    assert schedule.logsnr(0.5).shape == ()


def test_endpoints():
    c = sd.Cosine(-7.0, 9.0)
    np.testing.assert_allclose([c.logsnr(0.0), c.logsnr(1.0)], [9.0, -7.0], atol=1e-4)
    s = sd.ShiftedCosine(256, base=64)
    shift = 2 * math.log(64 / 256)
    np.testing.assert_allclose([s.logsnr(0.0), s.logsnr(1.0)], [15 + shift, -15 + shift], atol=1e-3)
    i = sd.InterpolatedCosine(256, low=32)
    np.testing.assert_allclose(
        [i.logsnr(0.0), i.logsnr(1.0)], [15.0, -15 + 2 * math.log(32 / 256)], atol=1e-3
    )
    e = sd.EDM(0.002, 80.0, 7.0)
    np.testing.assert_allclose(
        [e.logsnr(0.0), e.logsnr(1.0)], [-2 * math.log(0.002), -2 * math.log(80.0)], rtol=1e-5
    )
    lin = sd.LinearLogSNR(-3.0, 4.0)
    np.testing.assert_allclose([lin.logsnr(0.0), lin.logsnr(1.0)], [4.0, -3.0])


def test_baseline_identities():
    cosine = sd.Cosine()
    assert np.allclose(sd.ShiftedCosine(64, base=64).logsnr(T), cosine.logsnr(T), atol=1e-6)
    assert np.allclose(sd.InterpolatedCosine(64, low=64).logsnr(T), cosine.logsnr(T), atol=1e-6)
    # Halfway, the interpolation is the average of the two shifted schedules.
    i = sd.InterpolatedCosine(128, low=32, high=64)
    mean = 0.5 * (
        sd.ShiftedCosine(128, base=32).logsnr(0.5) + sd.ShiftedCosine(128, base=64).logsnr(0.5)
    )
    np.testing.assert_allclose(i.logsnr(0.5), mean, atol=1e-5)
    # EDM's Karras grid: sigma at uniform t are the Karras sigmas.
    e = sd.EDM()
    i_steps = np.arange(5) / 4
    karras = (0.002 ** (1 / 7) + i_steps * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    np.testing.assert_allclose(jnp.exp(-0.5 * e.logsnr(i_steps)), karras, rtol=1e-4)


def test_piecewise_linear_values_and_extrapolation():
    s = sd.PiecewiseLinear(np.array([4.0, 2.0, -1.0], np.float32))
    np.testing.assert_allclose(s.logsnr(np.array([0.0, 0.25, 0.5, 0.75, 1.0])), [4, 3, 2, 0.5, -1])
    np.testing.assert_allclose(s.dlogsnr_dt(np.array([0.1, 0.6])), [-4.0, -6.0])
    # The inverse extends the end segments linearly; the schedule itself is
    # defined on [0, 1] only.
    np.testing.assert_allclose(s.t_of_logsnr(np.array([6.0, -4.0])), [-0.5, 1.5])
    with pytest.raises(ValueError, match=r"`t` must lie in \[0, 1\]"):
        s.logsnr(np.array([-0.5, 1.5]))
    assert s.num_segments == 2


def test_piecewise_linear_batched_knots_broadcast_like_vmap():
    knots = random_knots(1, (3, 6))
    s = sd.PiecewiseLinear(knots)
    t = np.array([0.1, 0.55, 0.93], np.float32)
    per_example = jax.vmap(lambda k, t: sd.PiecewiseLinear(k).logsnr(t))(knots, t)
    np.testing.assert_allclose(s.logsnr(t), per_example, rtol=1e-6)
    assert s.logsnr(0.5).shape == (3,)
    lam = s.logsnr(t)
    np.testing.assert_allclose(s.t_of_logsnr(lam), t, atol=1e-5)
    vmapped = jax.vmap(lambda sched, t: sched.dlogsnr_dt(t))(s, t)
    np.testing.assert_allclose(s.dlogsnr_dt(t), vmapped, rtol=1e-6)


@given(seed=st.integers(0, 999), knots=st.sampled_from([2, 5, 33]))
def test_piecewise_linear_properties(seed, knots):
    s = sd.PiecewiseLinear(random_knots(seed, (knots,)))
    assert_strictly_decreasing(s.logsnr(T))
    t = np.linspace(0.0, 1.0, 57, dtype=np.float32)
    np.testing.assert_allclose(s.t_of_logsnr(s.logsnr(t)), t, atol=1e-4)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: sd.Cosine(5.0, 5.0), "`logsnr_min` must be smaller than `logsnr_max`"),
        (lambda: sd.LinearLogSNR(3.0, -3.0), "`logsnr_min` must be smaller"),
        (lambda: sd.ShiftedCosine(0), "`resolution` must be positive"),
        (lambda: sd.ShiftedCosine(64, base=-1), "`base` must be positive"),
        (lambda: sd.InterpolatedCosine(-64), "`resolution` must be positive"),
        (lambda: sd.InterpolatedCosine(64, low=128), "`low` must not exceed `high`"),
        (lambda: sd.EDM(sigma_min=0.0), "`sigma_min` must be positive"),
        (lambda: sd.EDM(sigma_min=90.0), "`sigma_min` must be smaller than `sigma_max`"),
        (lambda: sd.EDM(rho=-1.0), "`rho` must be positive"),
        (lambda: sd.PiecewiseLinear(np.array([1.0, 2.0])), "strictly decreasing"),
        (lambda: sd.PiecewiseLinear(np.array([1.0, 1.0])), "strictly decreasing"),
        (lambda: sd.PiecewiseLinear(np.array([np.nan, 1.0])), "finite"),
        (lambda: sd.PiecewiseLinear(np.array([1.0])), "at least 2 knots"),
        (lambda: sd.PiecewiseLinear(np.float32(1.0)), "at least 1 dimensions"),
    ],
)
def test_construction_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_piecewise_linear_checks_traced_knots():
    with pytest.raises(RUNTIME_ERRORS, match="strictly decreasing"):
        jax.block_until_ready(jax.jit(lambda k: sd.PiecewiseLinear(k).knots)(jnp.array([1.0, 2.0])))


def test_traced_checks_keep_values_bit_for_bit_and_a_sharded_batch_sharded(capfd):
    # The traced checks tie their argument to a scalar check (`_checks._tied`): the
    # values come back bit for bit (-0.0, inf and NaN included; subnormals are flushed
    # to zero by XLA:CPU, as by any operation there), and batch-sharded knots
    # stay sharded instead of being gathered onto device 0, where XLA puts the check's
    # host callback (it then warns of an "involuntary full rematerialization").
    edge = jnp.array([-0.0, 0.0, jnp.inf, -jnp.inf, jnp.nan, 1e-30, -3.5], jnp.float32)
    out = jax.jit(lambda x: fail_if(x, jnp.any(x == 7.0), "seven"))(edge)
    np.testing.assert_array_equal(np.asarray(out).view(np.uint32), np.asarray(edge).view(np.uint32))
    with pytest.raises(RUNTIME_ERRORS, match="seven"):
        jax.block_until_ready(jax.jit(lambda x: fail_if(x, jnp.any(x == 7.0), "seven"))(edge + 7))

    devices = jax.devices()[:4]
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    knots = jax.device_put(jnp.asarray(random_knots(1, (len(devices) * 2, 8))), split)
    t = jnp.full((len(knots),), 0.3)
    logsnr = jax.jit(
        lambda k, t: sd.PiecewiseLinear(2.0 * k).logsnr(t),
        in_shardings=(split, split),
        out_shardings=split,
    )
    capfd.readouterr()
    got = jax.block_until_ready(logsnr(knots, t))
    assert "rematerialization" not in capfd.readouterr().err
    assert got.sharding.is_equivalent_to(split, 1)
    want = jax.vmap(lambda k, t: sd.PiecewiseLinear(2.0 * k).logsnr(t))(np.asarray(knots), t)
    np.testing.assert_allclose(got, want, rtol=1e-6)
