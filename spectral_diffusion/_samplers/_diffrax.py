"""Probability-flow ODE and reverse-time SDE samplers, solved with diffrax."""

import diffrax
import jax
import jax.numpy as jnp
import lineax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import check_positive
from .._custom_types import IntScalar, RealScalar
from .._schedules import Schedule, alpha_sigma, check_num_steps
from ._common import (
    DenoiseFn,
    NoiseFilter,
    SampleStats,
    check_per_example,
    check_start,
    conditioning_for,
    denoised,
    finish,
    working_dtype,
)


#: Default tolerances of the adaptive ODE solve (state in pixel units of [-1, 1]).
ADAPTIVE_RTOL = 1e-3
ADAPTIVE_ATOL = 1e-3
#: Resolution of the SDE's Brownian path, relative to the smallest step of the
#: grid: increments between grid points are then exact to well below float32 noise.
BROWNIAN_RELATIVE_TOLERANCE = 1e-3


def _evaluations(solver: diffrax.AbstractSolver, num_steps: Int[Array, ""]) -> Int[Array, ""]:
    tableau = getattr(solver, "tableau", None)
    if tableau is None:  # single-stage solvers (Euler)
        return num_steps
    stages = len(tableau.c) + 1
    # First-same-as-last solvers reuse the last stage; the very first step pays it.
    return num_steps * (stages - int(tableau.fsal)) + int(tableau.fsal)


def ode(
    denoise: DenoiseFn,
    schedule: Schedule,
    z1: ArrayLike,
    num_steps: IntScalar | None = None,
    *,
    cond=None,
    solver: diffrax.AbstractSolver = diffrax.Heun(),
    rtol: RealScalar | None = None,
    atol: RealScalar | None = None,
    noise_filter: NoiseFilter | None = None,
    max_steps: int = 4096,
    return_stats: bool = False,
) -> Float[Array, "C H W"] | tuple[Float[Array, "C H W"], SampleStats]:
    r"""Sample by solving the probability-flow ODE with diffrax.

    In $s = \sigma/\alpha = e^{-\lambda/2}$ and $y = z/\alpha$ the flow is
    $\frac{dy}{ds} = \frac{y - \hat x(y, s)}{s}$, integrated from $s(1)$ to $s(0)$
    starting at $y = z_1/\alpha(1)$; the result is $y$ at $s(0)$, i.e. $z_0/\alpha(0)$.
    `diffrax.Euler()` on the schedule's grid is exactly [`spectral_diffusion.ddim`][]
    with `eta=0`; `diffrax.Heun()` is the EDM sampler.

    **Arguments:**

    - `denoise`, `schedule`, `z1`, `cond`, `noise_filter`: as in
        [`spectral_diffusion.ddim`][].
    - `num_steps`: solver steps on the schedule's grid $t_i = 1 - i/N$; `None` for an
        adaptive solve (PID controller) that uses the schedule's end points only.
    - `solver`: any diffrax ODE solver (adaptive solves need an embedded error
        estimate: not `Euler`).
    - `rtol`, `atol`: positive tolerances of the adaptive solve (default
        `ADAPTIVE_RTOL`, `ADAPTIVE_ATOL`); only with `num_steps=None`.
    - `max_steps`: bound on adaptive steps.
    - `return_stats`: also return a [`spectral_diffusion.SampleStats`][] with the
        number of denoiser evaluations the solve used.

    **Returns:**

    The sample, shape and dtype of `z1`; with `return_stats`, `(sample, stats)`.

    **Raises:**

    `ValueError` for a non-positive `num_steps`, non-positive `rtol`/`atol` (or
    tolerances with a fixed grid), a batched schedule, a `z1` that is not one
    floating `(C, H, W)` example, a `denoise` whose output shape differs from `z1`,
    or NaN/inf in `z1` or the result.
    """
    if num_steps is not None:
        num_steps = check_num_steps(num_steps)
        if rtol is not None or atol is not None:
            raise ValueError("`rtol`/`atol` apply to adaptive solves only (num_steps=None).")
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None:
            check_positive(value, name)
    check_per_example(schedule)
    cond = conditioning_for(denoise, schedule, cond)
    z = check_start(z1, noise_filter)

    def vector_field(s, y, args):
        lam = -2.0 * jnp.log(s)
        alpha, _ = alpha_sigma(lam)
        return (y - denoised(denoise, alpha * y, lam, cond)) / s

    if num_steps is None:
        ends = schedule.logsnr(jnp.array([1.0, 0.0], working_dtype(z)))
        controller = diffrax.PIDController(
            rtol=ADAPTIVE_RTOL if rtol is None else rtol,
            atol=ADAPTIVE_ATOL if atol is None else atol,
        )
    else:
        ends = schedule.logsnr_grid(num_steps, working_dtype(z))
        controller = diffrax.StepTo(ts=jnp.exp(-0.5 * ends))
    s = jnp.exp(-0.5 * ends)
    alpha_1, _ = alpha_sigma(ends[0])
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        solver,
        t0=s[0],
        t1=s[-1],
        dt0=None,
        y0=z / alpha_1,
        stepsize_controller=controller,
        max_steps=max_steps,
    )
    evaluations = _evaluations(solver, solution.stats["num_steps"])
    return finish(solution.ys[-1], evaluations, return_stats)


def sde(
    denoise: DenoiseFn,
    schedule: Schedule,
    z1: ArrayLike,
    num_steps: IntScalar,
    *,
    key: PRNGKeyArray,
    cond=None,
    solver: diffrax.AbstractSolver = diffrax.Euler(),
    noise_filter: NoiseFilter | None = None,
    return_stats: bool = False,
) -> Float[Array, "C H W"] | tuple[Float[Array, "C H W"], SampleStats]:
    r"""Sample by solving the reverse-time SDE with diffrax.

    In the variance-exploding form $y = z/\alpha = x + s\,\epsilon$ with
    $s = \sigma/\alpha = e^{-\lambda/2}$ (the variable of [`spectral_diffusion.ode`][]),
    the forward process is $dy = \sqrt{2s}\,dW_s$ and its reverse, run from $s(1)$
    down to $s(0)$ (diffrax time $u = -s$, increasing), is

    $$dy = -\frac{2\,(y - \hat x)}{s}\,du + \sqrt{2s}\,dW_u,$$

    twice the probability-flow drift plus additive noise. In this variable an
    Euler–Maruyama step scales $y - \hat x$ by $2 s_b / s_a - 1 \in (-1, 1)$ however
    large the step, so it is stable on any grid (in $\log s$ the same step would
    overshoot once a step exceeds half a unit of logSNR).

    The Brownian path is a `diffrax.VirtualBrownianTree` keyed by `key`, resolved to
    `BROWNIAN_RELATIVE_TOLERANCE` of the smallest step, so a solve is deterministic
    given its key and one key per example makes results independent of the batch
    size. Steps follow the schedule's grid; the result is $z_0/\alpha(0)$.

    **Arguments:**

    - `key`: the Brownian path's key (one per example).
    - `num_steps`: $N$ steps on the grid $t_i = 1 - i/N$.
    - `solver`: a diffrax SDE solver; `diffrax.Euler()` is Euler–Maruyama. The noise is
        additive, so `diffrax.ShARK()` (with its Lévy area) is a higher-order option.
    - the rest as in [`spectral_diffusion.ddim`][]; `noise_filter` filters $z_1$ and
        every Brownian increment.

    **Returns:**

    The sample, shape and dtype of `z1`; with `return_stats`, `(sample, stats)`.
    """
    num_steps = check_num_steps(num_steps)
    check_per_example(schedule)
    cond = conditioning_for(denoise, schedule, cond)
    z = check_start(z1, noise_filter)
    lam = schedule.logsnr_grid(num_steps, working_dtype(z))
    u = -jnp.exp(-0.5 * lam)
    structure = jax.ShapeDtypeStruct(z.shape, z.dtype)
    apply_filter = (lambda w: w) if noise_filter is None else noise_filter

    def drift(u, y, args):
        s = -u
        alpha, _ = alpha_sigma(-2.0 * jnp.log(s))
        return -2.0 * (y - denoised(denoise, alpha * y, -2.0 * jnp.log(s), cond)) / s

    def diffusion(u, y, args):
        scale = jnp.sqrt(-2.0 * u)
        return lineax.FunctionLinearOperator(lambda w: scale * apply_filter(w), structure)

    minimal = getattr(solver, "minimal_levy_area", diffrax.BrownianIncrement)
    levy_area = next(
        area
        for area in (
            diffrax.BrownianIncrement,
            diffrax.SpaceTimeLevyArea,
            diffrax.SpaceTimeTimeLevyArea,
        )
        if issubclass(area, minimal)
    )
    brownian = diffrax.VirtualBrownianTree(
        u[0],
        u[-1],
        tol=BROWNIAN_RELATIVE_TOLERANCE * jnp.min(jnp.diff(u)),
        shape=structure,
        key=key,
        levy_area=levy_area,
    )
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, brownian))
    alpha_1, _ = alpha_sigma(lam[0])
    solution = diffrax.diffeqsolve(
        terms,
        solver,
        t0=u[0],
        t1=u[-1],
        dt0=None,
        y0=z / alpha_1,
        stepsize_controller=diffrax.StepTo(ts=u),
    )
    return finish(solution.ys[-1], _evaluations(solver, solution.stats["num_steps"]), return_stats)
