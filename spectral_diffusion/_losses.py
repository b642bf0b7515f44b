r"""Diffusion training losses (SPEC §5): one per example, batched with stratified t."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._nets._blocks import Conditioning
from ._nets._denoiser import Denoiser
from ._samplers._common import alpha_sigma_of
from ._schedules import PiecewiseLinear, Schedule


class SigmoidWeighting(eqx.Module):
    r"""$w(\lambda) = \operatorname{sigmoid}(b - \lambda)$ with loss bias $b$
    (Kingma & Gao; SiD2 uses it with a per-resolution bias)."""

    bias: float = 0.0

    def __call__(self, lam: Float[Array, ""]) -> Float[Array, ""]:
        return jax.nn.sigmoid(self.bias - lam)


def _squared_error(
    residual: Float[Array, "C H W"], multiscale_base: int | None
) -> Float[Array, ""]:
    """Mean squared residual, or simple diffusion's multiscale version: the mean over
    resolutions from full down to `multiscale_base` of the mean squared residual
    average-pooled to that resolution, rescaled by the pooling factor so that white
    noise scores the same at every scale."""
    if multiscale_base is None:
        return jnp.mean(residual**2)
    channels, size, _ = residual.shape
    terms, factor = [], 1
    while size // factor >= multiscale_base:
        pooled = residual.reshape(channels, size // factor, factor, size // factor, factor).mean(
            (2, 4)
        )
        terms.append(jnp.mean(pooled**2) * factor**2)
        factor *= 2
    return jnp.mean(jnp.stack(terms))


class Loss(eqx.Module):
    """A per-example diffusion loss at time `t`."""

    multiscale_base: eqx.AbstractVar[int | None]

    @abc.abstractmethod
    def __call__(self, denoiser, schedule, x, eps, t, cond, *, key) -> Float[Array, ""]: ...


def _forward(denoiser: Denoiser, schedule: Schedule, x, eps, t, cond, key):
    lam = schedule.logsnr(t)
    alpha, sigma = alpha_sigma_of(lam)
    z = alpha * x + sigma * eps
    return lam, alpha, sigma, z, denoiser.output(z, lam, cond, key=key)


class WeightedEpsLoss(Loss):
    r"""Kingma & Gao's weighted loss:
    $\tfrac12\, w(\lambda)\,(-\tfrac{d\lambda}{dt})\,\|\epsilon - \hat\epsilon\|^2$
    (mean over pixels), with the schedule's own $d\lambda/dt$ — per instance for
    spectral schedules."""

    weighting: SigmoidWeighting = SigmoidWeighting()
    multiscale_base: int | None = None

    def __call__(self, denoiser, schedule, x, eps, t, cond, *, key):
        lam, alpha, sigma, z, out = _forward(denoiser, schedule, x, eps, t, cond, key)
        eps_hat = denoiser.parameterisation.to_eps(out, z, alpha, sigma)
        weight = 0.5 * self.weighting(lam) * -schedule.dlogsnr_dt(t)
        return weight * _squared_error(eps - eps_hat, self.multiscale_base)


class EpsLoss(Loss):
    r"""Unweighted $\|\epsilon - \hat\epsilon\|^2$ (Ho et al.)."""

    multiscale_base: int | None = None

    def __call__(self, denoiser, schedule, x, eps, t, cond, *, key):
        _, alpha, sigma, z, out = _forward(denoiser, schedule, x, eps, t, cond, key)
        eps_hat = denoiser.parameterisation.to_eps(out, z, alpha, sigma)
        return _squared_error(eps - eps_hat, self.multiscale_base)


class VLoss(Loss):
    r"""$\|v - \hat v\|^2$ with $v = \alpha\epsilon - \sigma x$ (Salimans & Ho)."""

    multiscale_base: int | None = None

    def __call__(self, denoiser, schedule, x, eps, t, cond, *, key):
        _, alpha, sigma, z, out = _forward(denoiser, schedule, x, eps, t, cond, key)
        x_hat = denoiser.parameterisation.to_x(out, z, alpha, sigma)
        eps_hat = (z - alpha * x_hat) / sigma
        v, v_hat = alpha * eps - sigma * x, alpha * eps_hat - sigma * x_hat
        return _squared_error(v - v_hat, self.multiscale_base)


def schedule_axis(schedule: Schedule) -> int | None:
    """0 for one schedule per example (batched knots), None for a shared one."""
    return 0 if isinstance(schedule, PiecewiseLinear) and schedule.knots.ndim == 2 else None


def batch_loss(
    loss: Loss,
    denoiser: Denoiser,
    schedule: Schedule,
    x: Float[Array, "B C H W"],
    labels: Int[Array, " B"],
    *,
    key: PRNGKeyArray,
    label_dropout: float = 0.0,
    num_classes: int = 1,
) -> Float[Array, ""]:
    r"""Mean loss over a batch, with $t$ stratified over the batch.

    $t_i = (u + i/B) \bmod 1$ for one $u \sim U[0, 1)$: the batch covers $[0, 1)$
    evenly, which lowers the variance of the loss estimate. Per-instance (batched
    [`spectral_diffusion.PiecewiseLinear`][]) and shared schedules go through the same
    code: the per-example loss is mapped over the schedule's batch axis if it has one.
    Labels are replaced by the null class `num_classes` with probability
    `label_dropout` (for classifier-free guidance). The conditioning carries each
    example's $\lambda(0)$ and $\lambda(1)$.
    """
    batch = x.shape[0]
    t_key, eps_key, drop_key, net_key = jax.random.split(key, 4)
    t = jnp.mod(jax.random.uniform(t_key) + jnp.arange(batch) / batch, 1.0)
    eps = jax.random.normal(eps_key, x.shape, x.dtype)
    dropped = jax.random.bernoulli(drop_key, label_dropout, (batch,))
    labels = jnp.where(dropped, num_classes, labels)

    def one(schedule, x, eps, t, label, key):
        ends = schedule.logsnr(jnp.array([0.0, 1.0]))
        cond = Conditioning(label, ends[0], ends[1])
        return loss(denoiser, schedule, x, eps, t, cond, key=key)

    per_example = jax.vmap(one, in_axes=(schedule_axis(schedule), 0, 0, 0, 0, 0))
    return jnp.mean(per_example(schedule, x, eps, t, labels, jax.random.split(net_key, batch)))
