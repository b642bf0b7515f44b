r"""Training proposals (SPEC §5): how training draws noise levels, separately from the
schedule the denoiser is conditioned on and sampled with.

A diffusion loss is an integral over each example's logSNR range
$[\lambda(1), \lambda(0)]$. Training estimates it by Monte Carlo: draw $\lambda \sim p$
and weight the per-example error by $1/p(\lambda)$. Every proposal whose support covers
the range gives the same expected loss; they differ only in the variance of the
estimate, which is what decides how much a training step learns.
"""

import abc
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import check_finite, fail_if
from ._schedules import PiecewiseLinear, Schedule


class NoiseLevel(NamedTuple):
    r"""One training example's noise level, drawn by a [`spectral_diffusion.Proposal`][].

    Fields carry leading batch axes when drawn for a batch.

    - `t`: the time on the example's own schedule, $\lambda(t) = $ `logsnr`.
    - `logsnr`: $\lambda$, always inside the example's $[\lambda(1), \lambda(0)]$.
    - `inverse_density`: $1 / p(\lambda)$, the importance weight that makes the
        Monte Carlo loss an unbiased estimate of the integral over $\lambda$.
    """

    t: Float[Array, "*batch"]
    logsnr: Float[Array, "*batch"]
    inverse_density: Float[Array, "*batch"]


class Proposal(eqx.Module):
    r"""How training draws an example's noise level from a uniform number $u \in [0, 1)$.

    `proposal(schedule, u)` maps $u$ through the inverse CDF of the proposal density
    $p$ on the example's range $[\lambda(1), \lambda(0)]$ and returns a
    [`spectral_diffusion.NoiseLevel`][]. Written for one example (one schedule, one
    $u$); [`spectral_diffusion.noise_levels`][] draws a stratified batch.
    """

    @abc.abstractmethod
    def __call__(self, schedule: Schedule, u: Float[ArrayLike, ""]) -> NoiseLevel:
        """The noise level of quantile `u` on `schedule` (one example)."""


class ScheduleProposal(Proposal):
    r"""$t \sim U[0, 1)$ on the example's own schedule: $\lambda = \lambda(t)$ and
    $1/p(\lambda) = -d\lambda/dt$.

    The literal reading of a schedule as a training distribution. For a tight
    per-instance schedule, linear in $\lambda$ over ~20 nats, it spends as much time at
    $\lambda > 4$ (where the sigmoid loss weight is ~0) as anywhere else; see the
    Method page, "Training noise levels".
    """

    def __call__(self, schedule: Schedule, u: Float[ArrayLike, ""]) -> NoiseLevel:
        u = jnp.asarray(u)
        return NoiseLevel(u, schedule.logsnr(u), -schedule.dlogsnr_dt(u))


class TruncatedProposal(Proposal):
    r"""$\lambda$ from a reference schedule's density, restricted to each example's
    own range $[\lambda(1), \lambda(0)]$.

    With $\tau$ the reference's time, $\tau_0 = \tau(\lambda(0))$ and
    $\tau_1 = \tau(\lambda(1))$: $\tau = \tau_0 + u\,(\tau_1 - \tau_0)$,
    $\lambda = \lambda_\text{ref}(\tau)$ and
    $1/p(\lambda) = -\lambda_\text{ref}'(\tau)\,(\tau_1 - \tau_0)$ (exact).

    Where an example's range reaches past the reference's own
    $[\lambda_\text{ref}(1), \lambda_\text{ref}(0)]$, the reference is extended linearly
    in $\tau$ with its end slopes (as [`spectral_diffusion.PiecewiseLinear`][] is), so
    its density stays positive and continuous there and the estimate stays unbiased
    for any range. For the cosine over $[-15, 15]$ the extension holds the density at
    its end value, about $10^{-3}$ of its peak.

    With the baseline's own schedule as the reference, a per-instance schedule draws
    its training noise from the same density as the baseline, cut to the range where
    that image has any signal to denoise: the two arms then differ only by the
    truncation, the conditioning and the sampling schedule.

    **Arguments:**

    - `reference`: any [`spectral_diffusion.Schedule`][] (shared, not batched), e.g.
        `Cosine(-15, 15)` or the SiD2 baseline `InterpolatedCosine(resolution)`.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{kingma2023understanding,
          title={Understanding Diffusion Objectives as the {ELBO} with Simple Data
                 Augmentation},
          author={Kingma, Diederik P and Gao, Ruiqi},
          booktitle={Advances in Neural Information Processing Systems},
          year={2023}
        }
        ```
    """

    reference: Schedule

    def __check_init__(self):
        if not isinstance(self.reference, Schedule):
            raise ValueError(
                f"`reference` must be a spectral_diffusion.Schedule, got {self.reference!r}."
            )
        if isinstance(self.reference, PiecewiseLinear) and self.reference.knots.ndim != 1:
            raise ValueError(
                "`reference` must be one schedule shared by every example, got knots of "
                f"shape {self.reference.knots.shape}."
            )

    def _ends(self):
        ref = self.reference
        ends = jnp.array([0.0, 1.0])
        return ref.logsnr(ends), ref.dlogsnr_dt(ends)

    def time(self, lam: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The reference's (linearly extended) time of `lam`: its inverse everywhere."""
        (lam0, lam1), (slope0, slope1) = self._ends()
        lam = jnp.asarray(lam)
        inside = self.reference.t_of_logsnr(jnp.clip(lam, lam1, lam0))
        before = (lam - lam0) / slope0
        after = 1.0 + (lam - lam1) / slope1
        return jnp.where(lam > lam0, before, jnp.where(lam < lam1, after, inside))

    def logsnr(self, tau: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The reference's (linearly extended) logSNR at its time `tau`."""
        (lam0, lam1), (slope0, slope1) = self._ends()
        tau = jnp.asarray(tau)
        inside = self.reference.logsnr(jnp.clip(tau, 0.0, 1.0))
        return jnp.where(
            tau < 0.0,
            lam0 + slope0 * tau,
            jnp.where(tau > 1.0, lam1 + slope1 * (tau - 1.0), inside),
        )

    def dlogsnr_dt(self, tau: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """The reference's (linearly extended) $d\\lambda/d\\tau$."""
        (_, _), (slope0, slope1) = self._ends()
        tau = jnp.asarray(tau)
        inside = self.reference.dlogsnr_dt(jnp.clip(tau, 0.0, 1.0))
        return jnp.where(tau < 0.0, slope0, jnp.where(tau > 1.0, slope1, inside))

    def __call__(self, schedule: Schedule, u: Float[ArrayLike, ""]) -> NoiseLevel:
        lam_0, lam_1 = schedule.logsnr(jnp.array([0.0, 1.0]))
        tau_0, tau_1 = self.time(lam_0), self.time(lam_1)
        tau = tau_0 + jnp.asarray(u) * (tau_1 - tau_0)
        # The round trip through the reference can land an ulp outside the range.
        lam = jnp.clip(self.logsnr(tau), lam_1, lam_0)
        inverse_density = -self.dlogsnr_dt(tau) * (tau_1 - tau_0)
        t = jnp.clip(schedule.t_of_logsnr(lam), 0.0, 1.0)
        return NoiseLevel(t, lam, inverse_density)


def noise_levels(
    proposal: Proposal, schedule: Schedule, batch_size: int, *, key: PRNGKeyArray
) -> NoiseLevel:
    r"""A stratified batch of noise levels: $u_i = (u + i/B) \bmod 1$ for one
    $u \sim U[0, 1)$, mapped through `proposal` on each example's schedule.

    Stratifying covers the proposal's quantiles evenly, which lowers the variance of
    the batch loss. This is the draw [`spectral_diffusion.batch_loss`][] makes.

    **Arguments:**

    - `proposal`: a [`spectral_diffusion.Proposal`][].
    - `schedule`: one shared schedule, or a batched
        [`spectral_diffusion.PiecewiseLinear`][] with `batch_size` rows.
    - `batch_size`: $B$.
    - `key`: the key of the one uniform draw.

    **Returns:**

    A [`spectral_diffusion.NoiseLevel`][] whose fields have shape `(batch_size,)`.
    """
    u = jnp.mod(jax.random.uniform(key) + jnp.arange(batch_size) / batch_size, 1.0)
    return jax.vmap(proposal, in_axes=(schedule_axis(schedule), 0))(schedule, u)


def schedule_axis(schedule: Schedule) -> int | None:
    """0 for one schedule per example (batched knots), None for a shared one."""
    return 0 if isinstance(schedule, PiecewiseLinear) and schedule.knots.ndim == 2 else None


def effective_batch_size(weights: Float[ArrayLike, " B"]) -> Float[Array, ""]:
    r"""Kish's effective sample size of per-example loss weights,
    $(\sum_i \omega_i)^2 / \sum_i \omega_i^2$.

    $B$ when every example weighs the same, 1 when one example carries the whole
    batch. For the weighted loss, measure the weights on a residual whose size does
    not itself vary with $\lambda$ (the $v$-residual: $\|\epsilon - \hat\epsilon\|^2
    = \alpha^2 \|v - \hat v\|^2$), e.g.
    `effective_batch_size(loss.weight(levels) * jax.nn.sigmoid(levels.logsnr))`
    with `loss` a [`spectral_diffusion.WeightedEpsLoss`][] and `levels` from
    [`spectral_diffusion.noise_levels`][].

    **Raises:**

    `ValueError` for weights that are negative, non-finite, or all zero.
    """
    weights = check_finite(weights, "weights")
    weights = fail_if(
        weights,
        jnp.any(weights < 0) | ~jnp.any(weights > 0),
        "`weights` must be non-negative with at least one positive value.",
    )
    return jnp.sum(weights) ** 2 / jnp.sum(weights**2)
