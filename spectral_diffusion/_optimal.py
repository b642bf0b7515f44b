r"""Schedules optimised on the Gaussian oracle: the least sampling error any schedule
reaches at a given NFE for a given spectrum.

The oracle's errors are closed-form functions of the logSNRs a sampler visits, so
gradient descent through them (no Monte Carlo) finds the best schedule for one
spectrum. The knots are optimised in the unconstrained coordinates of
[`spectral_diffusion.knots_to_unconstrained`][]: every iterate is a valid, strictly
decreasing schedule, so the optimiser needs no projection or penalty.
"""

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import as_integer, as_real, check_choice
from ._custom_types import IntScalar, RealScalar
from ._gaussian import GaussianSpectral, ancestral_band_variance, band_errors
from ._mixture import knots_from_unconstrained, knots_to_unconstrained
from ._schedules import EDM, PiecewiseLinear, Schedule, check_num_steps, time_grid


#: Samplers with a differentiable closed form, by name: the `eta` of
#: [`spectral_diffusion.ddim`][] (0 is DDIM, 1 is DDPM ancestral sampling).
OPTIMAL_SAMPLERS = {"ddim": 0.0, "ddpm": 1.0}
#: Error measures of [`spectral_diffusion.spectral_errors`][]; `metric` also takes
#: their sum, `"kl+w2"`, or a mapping from them to weights.
OPTIMAL_METRICS = ("kl", "w2")
#: The default objective. Either measure alone has a degenerate optimum: KL's
#: leaves the few strong low-frequency bands far off (it grows only logarithmically
#: when a band's variance is too small), W2's the many weak high-frequency ones.
DEFAULT_METRIC = "kl+w2"
#: Above this many bands the optimiser works on a weighted summary of them (equal
#: bins in log variance); the final choice is always made on the exact error.
DEFAULT_BANDS = 4096


def _metric_weights(metric: str | Mapping[str, RealScalar]) -> tuple[tuple[str, float], ...]:
    """`metric` as static `(name, weight)` pairs."""
    if isinstance(metric, str):
        names = metric.split("+")
        if not all(name in OPTIMAL_METRICS for name in names) or len(set(names)) < len(names):
            raise ValueError(
                f"`metric` must be one of {list(OPTIMAL_METRICS)}, their sum 'kl+w2', or a "
                f"mapping from them to non-negative weights; got {metric!r}."
            )
        return tuple(sorted((name, 1.0) for name in names))
    if not isinstance(metric, Mapping) or not metric:
        raise ValueError(
            f"`metric` must be one of {list(OPTIMAL_METRICS)} or a mapping from them to "
            f"non-negative weights, e.g. {{'kl': 1.0, 'w2': 0.5}}; got {metric!r}."
        )
    pairs = []
    for name, weight in metric.items():
        check_choice(name, "metric", dict.fromkeys(OPTIMAL_METRICS))
        pairs.append((name, as_real(weight, f"metric[{name!r}]", low=0.0)))
    if not any(weight > 0 for _, weight in pairs):
        raise ValueError(f"`metric` needs a positive weight, got {metric!r}.")
    return tuple(sorted(pairs))


def band_summary(
    variances: Float[Array, "..."], num_bands: int
) -> tuple[Float[Array, " bands"], Float[Array, " bands"]]:
    """Many bands as at most `num_bands` weighted ones: equal-width bins in log
    variance, each the mean variance of its members, weighted by their count (empty
    bins weigh 0). Exact for the sums of `w2`; within a bin, variances differ by a
    factor of at most `exp(range / num_bands)`. Fewer bands than that are returned
    as they are, each of weight 1."""
    flat = variances.reshape(-1)
    if flat.size <= num_bands:
        return flat, jnp.ones_like(flat)
    log = jnp.log(flat)
    lo, hi = jnp.min(log), jnp.max(log)
    width = jnp.maximum(hi - lo, jnp.finfo(flat.dtype).tiny) / num_bands
    index = jnp.clip(jnp.floor((log - lo) / width), 0, num_bands - 1).astype(jnp.int32)
    counts = jnp.zeros(num_bands, flat.dtype).at[index].add(1.0)
    sums = jnp.zeros(num_bands, flat.dtype).at[index].add(flat)
    values = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 1.0)
    return values, counts


def _grid(knots: Float[Array, " knots"], num_steps: int) -> Float[Array, " grid"]:
    # The piecewise-linear schedule on the sampling grid, noise to data; the same
    # values as PiecewiseLinear(knots).logsnr_grid without its run-time checks,
    # which an iterate whose gaps round to zero would trip.
    t = time_grid(num_steps, np.float32)
    at = jnp.linspace(0.0, 1.0, knots.shape[-1], dtype=knots.dtype)
    return jnp.interp(jnp.asarray(t, knots.dtype), at, knots)


def _error(values, weights, grid, eta, metric):
    variance = ancestral_band_variance(values, grid, eta)
    errors = band_errors(variance, values, weights, axes=(-1,))
    return sum(weight * errors[name] for name, weight in metric)


def schedule_error(
    oracle: GaussianSpectral,
    schedule: Schedule,
    num_steps: IntScalar,
    *,
    sampler: str = "ddim",
    metric: str | Mapping[str, RealScalar] = DEFAULT_METRIC,
) -> Float[Array, ""]:
    """The exact error of sampling `oracle` along `schedule` in `num_steps` steps: what
    [`spectral_diffusion.optimal_schedule`][] minimises, differentiable in the
    schedule's parameters.

    **Arguments:**

    - `oracle`: one [`spectral_diffusion.GaussianSpectral`][].
    - `schedule`: one schedule (not batched).
    - `num_steps`: NFE $N \\geq 1$.
    - `sampler`: `"ddim"` or `"ddpm"`.
    - `metric`: `"kl"`, `"w2"`, their sum `"kl+w2"` (the default), or a mapping from
        them to non-negative weights (the weighted sum).
    """
    if not isinstance(oracle, GaussianSpectral):
        raise ValueError(f"`oracle` must be a GaussianSpectral, got {type(oracle).__name__}.")
    num_steps = check_num_steps(num_steps)
    check_choice(sampler, "sampler", OPTIMAL_SAMPLERS)
    metric = _metric_weights(metric)
    values = oracle.variances.reshape(-1)
    return _error(
        values,
        jnp.ones_like(values),
        schedule.logsnr_grid(num_steps, values.dtype),
        OPTIMAL_SAMPLERS[sampler],
        metric,
    )


@eqx.filter_jit
def _optimise(
    variances, u_init, jitter, num_steps, eta, metric, steps, learning_rate, bands, fix_ends
):
    values, weights = band_summary(variances, bands)
    exact = jnp.ones_like(variances.reshape(-1))

    def coordinates(u):
        if not fix_ends:
            return u
        # lambda(1) = u_0 and the total range sum(exp(u_j)) kept from the start: the
        # gaps are that range times softmax(u_1..K), so lambda(0) is kept too.
        total = jax.nn.logsumexp(u_init[1:])
        return jnp.concatenate([u_init[:1], total + jax.nn.log_softmax(u[1:])])

    def loss(u, values, weights):
        grid = _grid(knots_from_unconstrained(coordinates(u)), num_steps)
        return jnp.log(_error(values, weights, grid, eta, metric))

    optimiser = optax.chain(optax.zero_nans(), optax.adam(learning_rate))

    def step(carry, _):
        u, state, best_u, best = carry
        value, grad = jax.value_and_grad(loss)(u, values, weights)
        better = value < best  # False for NaN: a non-finite iterate is never kept
        best_u, best = jnp.where(better, u, best_u), jnp.where(better, value, best)
        with jax.numpy_dtype_promotion("standard"):  # optax: float ** int32
            updates, state = optimiser.update(grad, state, u)
        return (optax.apply_updates(u, updates), state, best_u, best), None

    start = u_init + jitter
    carry = (start, optimiser.init(start), u_init, jnp.inf)
    (last, _, best_u, _), _ = jax.lax.scan(step, carry, None, length=steps)
    # The final choice on the exact error: the best iterate, the last one, or the
    # initialisation itself, so the result is never worse than `init`.
    candidates = jnp.stack([best_u, last, u_init])
    errors = jax.vmap(lambda u: loss(u, variances.reshape(-1), exact))(candidates)
    errors = jnp.where(jnp.isnan(errors), jnp.inf, errors)
    return coordinates(candidates[jnp.argmin(errors)])


def optimal_schedule(
    oracle: GaussianSpectral,
    num_steps: IntScalar,
    *,
    sampler: str = "ddim",
    metric: str | Mapping[str, RealScalar] = DEFAULT_METRIC,
    num_knots: IntScalar | None = None,
    init: Schedule | None = None,
    steps: IntScalar = 400,
    learning_rate: RealScalar = 0.05,
    bands: IntScalar | None = DEFAULT_BANDS,
    fix_ends: bool = False,
    key: PRNGKeyArray | None = None,
) -> PiecewiseLinear:
    r"""The schedule with the least exact sampling error on `oracle` at `num_steps`.

    Minimises the log of the closed-form error of
    [`spectral_diffusion.schedule_error`][] by Adam (optax) on the unconstrained knot
    coordinates $u_0 = \lambda_K$, $u_j = \log(\lambda_{j-1} - \lambda_j)$, so every
    iterate is a valid schedule, end points included. Gradients come from
    `jax.grad` through the sampler's variance recursion: no Monte Carlo. The result
    is the best of the iterates and the initialisation on the exact error, so it is
    never worse than `init`. A local optimum: the problem is not convex.

    Works under `jit` and `vmap`, and for a batched oracle (variances
    `(..., C, H, W)`: one optimum per spectrum, knots `(..., K + 1)`).

    **Arguments:**

    - `oracle`: a [`spectral_diffusion.GaussianSpectral`][] (e.g.
        `GaussianSpectral.from_image(x)`).
    - `num_steps`: the sampler's NFE $N \geq 1$.
    - `sampler`: `"ddim"` (`eta = 0`) or `"ddpm"` (ancestral, `eta = 1`).
    - `metric`: `"kl"` (KL per dimension), `"w2"` (relative $W_2^2$), their sum
        `"kl+w2"` (the default), or a mapping from them to non-negative weights (the
        weighted sum). Either measure alone has a degenerate optimum: KL's leaves the
        strong low frequencies far off, W2's the weak high ones (see the Optimal
        schedules page).
    - `num_knots`: $K + 1 \geq 2$ knots of the result; default $N + 1$, one per grid
        time, which is every degree of freedom an $N$-step sampler has.
    - `init`: the starting schedule, one for every spectrum or one per spectrum of
        a batched oracle (the same batch shape), sampled at the knots' times.
        Default: [`spectral_diffusion.EDM`][]. The start matters: from the cosine
        schedule, and sometimes from the spectral ones, Adam stalls on a plateau
        (KL about 0.03 at NFE 8, 5–25× above what it reaches from EDM) that EDM's
        start avoided on every photograph we tried.
    - `steps`: optimiser iterations ($\geq 0$; 0 returns `init` on the knots).
    - `learning_rate`: Adam's step size in the unconstrained coordinates.
    - `bands`: above this many bands the iterations use a weighted summary of the
        spectrum (see `band_summary`: equal bins in log variance); `None` always uses
        every band. The final choice uses every band.
    - `fix_ends`: keep `init`'s end points $\lambda(0)$ and $\lambda(1)$ and
        optimise only the knots between them (the gaps are the fixed range times a
        softmax, so every iterate is valid). For a model conditioned on its
        schedule's end points, this keeps the conditioning where it was trained.
    - `key`: when given, the starting coordinates are perturbed by
        $\mathcal N(0, 0.1^2)$: random restarts (`vmap` over keys, keep the best).

    **Returns:**

    A [`spectral_diffusion.PiecewiseLinear`][] with `num_knots` knots (batched like
    the oracle).

    **Raises:**

    `ValueError` for an oracle that is not a `GaussianSpectral`, `num_steps < 1`, an
    unknown sampler or metric, `num_knots < 2`, an `init` batched unlike the oracle,
    or negative `steps`; a NaN or non-positive spectrum is refused by `GaussianSpectral` itself.

    ??? cite "Reference"

        Optimising schedules in a Gaussian spectral model of the data follows Benita,
        Elad & Keshet (2025), who write DDIM/DDPM inference on Gaussian data as a
        closed-form spectral transfer function and optimise the schedule for W2 or KL;
        here the errors are those of [`spectral_diffusion.GaussianSpectral`][] and the
        knots live in the unconstrained coordinates of the schedule mixture.

        ```bibtex
        @article{benita2025spectral,
          title={Spectral Analysis of Diffusion Models with Application to Schedule
                 Design},
          author={Benita, Roi and Elad, Michael and Keshet, Joseph},
          journal={arXiv preprint arXiv:2502.00180},
          year={2025}
        }
        ```
    """
    if not isinstance(oracle, GaussianSpectral):
        raise ValueError(f"`oracle` must be a GaussianSpectral, got {type(oracle).__name__}.")
    num_steps = check_num_steps(num_steps)
    check_choice(sampler, "sampler", OPTIMAL_SAMPLERS)
    metric = _metric_weights(metric)
    num_knots = num_steps + 1 if num_knots is None else as_integer(num_knots, "num_knots", 2)
    steps = as_integer(steps, "steps", 0)
    learning_rate = as_real(learning_rate, "learning_rate", low=0.0, open_low=True)
    bands = None if bands is None else as_integer(bands, "bands", 1, alternative=" or None")
    if not isinstance(fix_ends, bool):
        raise ValueError(f"`fix_ends` must be True or False, got {fix_ends!r}.")
    variances = oracle.variances
    batch = variances.shape[:-3]
    flat = variances.reshape(-1, *variances.shape[-3:])
    count = flat.shape[0]
    init = EDM() if init is None else init
    if not isinstance(init, Schedule) or init.batch_shape not in ((), batch):
        raise ValueError(
            "`init` must be None or a Schedule, unbatched or with the oracle's batch shape "
            f"{batch}, got {init!r}."
        )
    u_init = knots_to_unconstrained(PiecewiseLinear.on_grid(init, num_knots - 1).knots)
    u_init = jnp.broadcast_to(u_init, (*batch, num_knots)).reshape(count, num_knots)
    u_init = u_init.astype(variances.dtype)
    if key is None:
        jitter = jnp.zeros((count, num_knots), variances.dtype)
    else:
        jitter = 0.1 * jax.random.normal(key, (count, num_knots), variances.dtype)
    total = int(np.prod(variances.shape[-3:]))
    summary = total if bands is None else bands
    optimise = jax.vmap(
        lambda v, u, j: _optimise(
            v,
            u,
            j,
            num_steps,
            OPTIMAL_SAMPLERS[sampler],
            metric,
            steps,
            learning_rate,
            summary,
            fix_ends,
        )
    )
    u = optimise(flat, u_init, jitter)
    return PiecewiseLinear(knots_from_unconstrained(u).reshape(*batch, num_knots))
