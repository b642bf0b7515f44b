"""Training proposals: unbiased weights, ranges, the old loss bit for bit, effective
batch size."""

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from helpers import raises_value_error, tree_allclose
from hypothesis import given
from test_nets_losses import SHAPE, perturb

import spectral_diffusion as sd


WEIGHTING = sd.SigmoidWeighting(1.0)
#: Stratified Monte Carlo: MC_KEYS independent batches of MC_DRAWS draws each. An
#: estimate is unbiased when the mean over batches is within MC_SIGMAS standard errors
#: (plus float32 round-off, MC_RTOL) of the exact integral.
MC_DRAWS = 4096
MC_KEYS = 32
MC_SIGMAS = 4.0
MC_RTOL = 1e-3


def f(lam):
    """A known per-lambda error curve: large when noisy, small when clean, never zero."""
    return 1.0 / (1.0 + jnp.exp(0.7 * (lam - 2.0))) + 0.05 * jnp.cos(0.3 * lam) + 0.1


def exact_integral(lam_1: float, lam_0: float, omega) -> float:
    """$\\int_{lam_1}^{lam_0} \\omega(\\lambda) f(\\lambda) d\\lambda$ in float64 (Simpson)."""
    grid = np.linspace(lam_1, lam_0, 20_001)
    values = np.asarray(omega(jnp.asarray(grid, jnp.float32)) * f(jnp.asarray(grid)), np.float64)
    h = grid[1] - grid[0]
    return float(
        h / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum() + 2 * values[2:-1:2].sum())
    )


@eqx.filter_jit
def monte_carlo(proposal, schedule, key):
    """Mean over MC_DRAWS stratified draws of w(lam)/2 / p(lam) f(lam), for each key."""
    loss = sd.WeightedEpsLoss(WEIGHTING)

    def one(key):
        levels = sd.noise_levels(proposal, schedule, MC_DRAWS, key=key)
        return jnp.mean(loss.weight(levels) * f(levels.logsnr))

    return jax.vmap(one)(jax.random.split(key, MC_KEYS))


def assert_unbiased(estimates, exact: float) -> None:
    estimates = np.asarray(estimates, np.float64)
    standard_error = estimates.std(ddof=1) / np.sqrt(len(estimates))
    # The test has power: the batches agree with each other to a few percent.
    assert standard_error < 0.02 * abs(exact), (standard_error, exact)
    error = abs(estimates.mean() - exact)
    assert error <= MC_SIGMAS * standard_error + MC_RTOL * abs(exact), (error, standard_error)


PROPOSALS = {
    "schedule": sd.ScheduleProposal(),
    "truncated cosine": sd.TruncatedProposal(sd.Cosine(-15.0, 15.0)),
    "truncated interpolated": sd.TruncatedProposal(sd.InterpolatedCosine(64, low=32)),
    "truncated piecewise": sd.TruncatedProposal(sd.PiecewiseLinear(jnp.linspace(10.0, -12.0, 9))),
}

SCHEDULES = {
    # Inside the reference's range, straddling one end, and past both ends.
    "linear inside": sd.LinearLogSNR(-9.0, 6.0),
    "linear past the clean end": sd.LinearLogSNR(-11.0, 19.0),
    "linear past both ends": sd.LinearLogSNR(-19.0, 21.0),
    "piecewise": sd.PiecewiseLinear(jnp.array([14.0, 5.0, 1.0, -0.5, -4.0, -13.0])),
}


@pytest.mark.parametrize("schedule_name", sorted(SCHEDULES))
@pytest.mark.parametrize("proposal_name", sorted(PROPOSALS))
def test_weighted_loss_is_unbiased(proposal_name, schedule_name, getkey):
    schedule = SCHEDULES[schedule_name]
    lam_0, lam_1 = (float(v) for v in schedule.logsnr(jnp.array([0.0, 1.0])))
    exact = exact_integral(lam_1, lam_0, lambda lam: 0.5 * WEIGHTING(lam))
    assert_unbiased(monte_carlo(PROPOSALS[proposal_name], schedule, getkey()), exact)


def test_time_weighted_losses_are_unbiased(getkey):
    """EpsLoss and VLoss are expectations over t ~ U[0, 1] on the example's schedule:
    their weight inverse_density / -dlambda/dt(t) keeps that under any proposal."""
    from spectral_diffusion._losses import _time_weight

    schedule = sd.Cosine(-12.0, 17.0)
    t = jnp.linspace(0.0, 1.0, 200_001)
    exact = float(jnp.mean(f(schedule.logsnr(t))))  # the integral over t in [0, 1]
    for proposal in PROPOSALS.values():

        def one(key, proposal=proposal):
            levels = sd.noise_levels(proposal, schedule, MC_DRAWS, key=key)
            return jnp.mean(_time_weight(schedule, levels) * f(levels.logsnr))

        assert_unbiased(jax.vmap(one)(jax.random.split(getkey(), MC_KEYS)), exact)


def spectral_knots(seed: int, batch: int = 6) -> jax.Array:
    rng = np.random.default_rng(seed)
    # Images with very different spectra: smooth, noisy, dim, bright.
    smooth = np.cumsum(np.cumsum(rng.normal(size=(batch, 3, 16, 16)), -1), -2)
    images = np.tanh(rng.uniform(0.05, 3.0, (batch, 1, 1, 1)) * smooth / smooth.std())
    return sd.spectral_schedule(sd.rapsd(jnp.asarray(images, jnp.float32)), num_knots=16).knots


@given(seed=st.integers(0, 10_000), proposal=st.sampled_from(sorted(PROPOSALS)))
def test_levels_lie_in_each_examples_range(seed, proposal):
    schedule = sd.PiecewiseLinear(spectral_knots(seed))
    batch = schedule.knots.shape[0]
    levels = sd.noise_levels(PROPOSALS[proposal], schedule, batch, key=jax.random.key(seed))
    lam_0, lam_1 = schedule.knots[:, 0], schedule.knots[:, -1]
    assert np.all(np.asarray(levels.logsnr <= lam_0)) and np.all(np.asarray(levels.logsnr >= lam_1))
    assert np.all(np.asarray(levels.inverse_density) > 0)
    assert np.all((np.asarray(levels.t) >= 0) & (np.asarray(levels.t) <= 1))
    # t is the example's own time of the drawn logSNR.
    assert tree_allclose(schedule.logsnr(levels.t), levels.logsnr, atol=1e-3)


def test_schedule_proposal_is_t_on_the_schedule(getkey):
    schedule = sd.PiecewiseLinear(spectral_knots(0, batch=8))
    levels = sd.noise_levels(sd.ScheduleProposal(), schedule, 8, key=getkey())
    assert tree_allclose(levels.logsnr, schedule.logsnr(levels.t), rtol=0, atol=0)
    assert tree_allclose(levels.inverse_density, -schedule.dlogsnr_dt(levels.t), rtol=0, atol=0)
    # Stratified: one draw per 1/B of [0, 1).
    assert sorted(np.floor(np.asarray(levels.t) * 8).astype(int)) == list(range(8))


def test_truncated_proposal_follows_the_reference_density(getkey):
    """Inside the range, p(lam) is the reference's density, renormalised: the same
    shape whatever the range, so two ranges' densities differ by a constant factor."""
    proposal = sd.TruncatedProposal(sd.Cosine())
    lam = jnp.linspace(-5.0, 5.0, 11)
    inverse = []
    for lo, hi in ((-9.0, 6.0), (-14.0, 12.0)):
        # The quantiles u at which this range's proposal draws `lam`.
        u = (proposal.time(lam) - proposal.time(hi)) / (proposal.time(lo) - proposal.time(hi))
        levels = jax.vmap(proposal, in_axes=(None, 0))(sd.LinearLogSNR(lo, hi), u)
        assert tree_allclose(levels.logsnr, lam, atol=1e-3)
        inverse.append(np.asarray(levels.inverse_density))
    ratio = inverse[0] / inverse[1]
    assert np.allclose(ratio, ratio[0], rtol=1e-3)
    # The cosine's density is proportional to sech(lam / 2).
    density = 1.0 / inverse[0]
    assert np.allclose(density / np.cosh(np.asarray(lam) / 2) ** -1, density[5], rtol=1e-3)


class TinyNet(eqx.Module):
    """The smallest `net(z, lam, cond, *, key)`: compiles in a blink, depends on all."""

    scale: jax.Array

    def __call__(self, z, lam, cond, *, key=None):
        embed = jnp.tanh(lam / 10) + 0.1 * cond.logsnr_0 - 0.1 * cond.logsnr_1
        return self.scale * z * (1.0 + embed) + 0.01 * cond.label.astype(z.dtype)


def old_batch_loss(
    loss_weighting, denoiser, schedule, x, labels, *, key, label_dropout, num_classes
):
    """main before the proposals (commit bb41740): t stratified on each example's own
    schedule, weight w(lam) * -dlambda/dt / 2 on the eps residual."""
    batch = x.shape[0]
    t_key, eps_key, drop_key, net_key = jax.random.split(key, 4)
    t = jnp.mod(jax.random.uniform(t_key) + jnp.arange(batch) / batch, 1.0)
    eps = jax.random.normal(eps_key, x.shape, x.dtype)
    dropped = jax.random.bernoulli(drop_key, label_dropout, (batch,))
    labels = jnp.where(dropped, num_classes, labels)

    def one(schedule, x, eps, t, label, key):
        ends = schedule.logsnr(jnp.array([0.0, 1.0]))
        cond = sd.Conditioning(label, ends[0], ends[1])
        lam = schedule.logsnr(t)
        alpha, sigma = sd.alpha_sigma(lam)
        z = alpha * x + sigma * eps
        out = denoiser.output(z, lam, cond, key=key)
        eps_hat = denoiser.parameterisation.to_eps(out, z, alpha, sigma)
        weight = 0.5 * loss_weighting(lam) * -schedule.dlogsnr_dt(t)
        return weight * jnp.mean((eps - eps_hat) ** 2)

    axis = 0 if isinstance(schedule, sd.PiecewiseLinear) and schedule.knots.ndim == 2 else None
    per_example = jax.vmap(one, in_axes=(axis, 0, 0, 0, 0, 0))
    return jnp.mean(per_example(schedule, x, eps, t, labels, jax.random.split(net_key, batch)))


def test_schedule_proposal_reproduces_the_old_loss_bit_for_bit(getkey):
    x = jnp.clip(jax.random.normal(getkey(), (4, *SHAPE)), -1, 1)
    labels = jnp.array([0, 1, 2, 0])
    kwargs = dict(key=getkey(), label_dropout=0.25, num_classes=3)

    @eqx.filter_jit
    def value_and_grad(fn, loss, denoiser, schedule, grad):
        objective = lambda d: fn(loss, d, schedule, x, labels, **kwargs)  # noqa: E731
        return eqx.filter_value_and_grad(objective)(denoiser) if grad else objective(denoiser)

    # The cpu preset's path (U-ViT, per-instance schedules; the value: a U-ViT's
    # gradient takes long to compile) and, with gradients, per-instance and shared.
    net = sd.UViT(
        image_size=8,
        stage_channels=(8, 16),
        dim=16,
        depth=1,
        num_heads=2,
        num_classes=3,
        key=getkey(),
    )
    uvit = sd.Denoiser(perturb(net, getkey()))
    tiny = sd.Denoiser(TinyNet(jnp.array(0.5)))
    per_instance = sd.spectral_schedule(sd.rapsd(x))
    for denoiser, schedule, grad in (
        (uvit, per_instance, False),
        (tiny, per_instance, True),
        (tiny, sd.Cosine(), True),
    ):
        old = value_and_grad(old_batch_loss, WEIGHTING, denoiser, schedule, grad)
        new = value_and_grad(sd.batch_loss, sd.WeightedEpsLoss(WEIGHTING), denoiser, schedule, grad)
        old, new = jax.tree.leaves(old), jax.tree.leaves(new)
        assert all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(old, new))


@pytest.mark.parametrize(
    ("loss", "parameterisation"),
    [
        (sd.WeightedEpsLoss(multiscale_base=4), sd.VPrediction()),
        (sd.EpsLoss(), sd.EpsPrediction()),
        (sd.VLoss(multiscale_base=4), sd.XPrediction()),
    ],
    ids=["weighted multiscale, v", "eps, eps", "v multiscale, x"],
)
def test_truncated_proposal_trains_every_loss_and_parameterisation(loss, parameterisation, getkey):
    x = jnp.clip(jax.random.normal(getkey(), (4, *SHAPE)), -1, 1)
    labels = jnp.array([0, 1, 2, 0])
    proposal = sd.TruncatedProposal(sd.Cosine())
    denoiser = sd.Denoiser(TinyNet(jnp.array(0.5)), parameterisation)

    @eqx.filter_jit
    def value_and_grad(denoiser, schedule):
        return eqx.filter_value_and_grad(
            lambda d: sd.batch_loss(
                loss, d, schedule, x, labels, key=jax.random.key(0), proposal=proposal
            )
        )(denoiser)

    for schedule in (sd.spectral_schedule(sd.rapsd(x)), sd.Cosine(-10.0, 12.0)):
        value, grads = value_and_grad(denoiser, schedule)
        assert jnp.isfinite(value) and value > 0
        assert jnp.isfinite(grads.net.scale) and grads.net.scale != 0


def test_effective_batch_size():
    assert float(sd.effective_batch_size(jnp.ones(32))) == pytest.approx(32)
    assert float(sd.effective_batch_size(jnp.zeros(32).at[3].set(2.0))) == pytest.approx(1)
    assert float(sd.effective_batch_size(jnp.array([1.0, 1.0, 0.0, 0.0]))) == pytest.approx(2)
    for bad in (jnp.zeros(4), jnp.array([1.0, -1.0]), jnp.array([1.0, jnp.nan])):
        with raises_value_error("weights"):
            sd.effective_batch_size(bad)


def test_truncated_proposal_raises_the_effective_batch_of_tight_schedules():
    """On real patches (the cpu preset's data), the schedule proposal wastes most of a
    batch at lambda where w ~ 0; the truncated cosine does not (FINDINGS §1: 8.8 vs
    26 of 32)."""
    patches = sd.data.BuiltinPatches(32, patches_per_image=16)
    schedule = sd.spectral_schedule(sd.rapsd(jnp.asarray(patches.images)))
    loss = sd.WeightedEpsLoss()
    sizes = {}
    for name, proposal in (
        ("schedule", sd.ScheduleProposal()),
        ("truncated", sd.TruncatedProposal(sd.Cosine())),
    ):
        levels = sd.noise_levels(proposal, schedule, len(patches), key=jax.random.key(0))
        v_weights = loss.weight(levels) * jax.nn.sigmoid(levels.logsnr)
        sizes[name] = float(sd.effective_batch_size(v_weights)) / len(patches)
    assert sizes["schedule"] < 0.5 < 0.7 < sizes["truncated"], sizes


def test_proposal_errors():
    # jaxtyping's runtime checks (on in the test suite) catch it first; users without
    # them get the library's own ValueError.
    with pytest.raises((ValueError, jaxtyping.TypeCheckError), match="reference"):
        sd.TruncatedProposal("cosine")
    with raises_value_error("shared"):
        sd.TruncatedProposal(sd.PiecewiseLinear(jnp.array([[3.0, 1.0], [2.0, 0.0]])))
