r"""Diffusion training losses (SPEC §5): one per example, at a noise level drawn by a
training proposal, batched with stratified quantiles."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._checks import as_integer
from ._compile import in_groups, network_groups
from ._nets._blocks import Conditioning
from ._nets._denoiser import Denoiser
from ._proposals import (
    NoiseLevel,
    Proposal,
    ScheduleProposal,
    noise_levels,
    schedule_axis as schedule_axis,
)
from ._schedules import Schedule, alpha_sigma


class SigmoidWeighting(eqx.Module):
    r"""$w(\lambda) = \operatorname{sigmoid}(b - \lambda)$ with loss bias $b$
    (Kingma & Gao; SiD2 uses it with a per-resolution bias)."""

    bias: float = 0.0

    def __call__(self, lam: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
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
    r"""A per-example diffusion loss at a drawn noise level.

    Each loss is an objective over the example's own schedule,
    $\int_{\lambda(1)}^{\lambda(0)} \omega(\lambda)\, \mathbb E\|r\|^2\, d\lambda$ for a
    residual $r$, and `loss(denoiser, schedule, x, eps, level, cond, key=...)` is its
    importance-sampled estimate $\omega(\lambda) / p(\lambda)\, \|r\|^2$ at a
    [`spectral_diffusion.NoiseLevel`][] drawn by a [`spectral_diffusion.Proposal`][].
    The expectation is the same for every proposal.
    """

    multiscale_base: eqx.AbstractVar[int | None]

    @abc.abstractmethod
    def __call__(
        self,
        denoiser: Denoiser,
        schedule: Schedule,
        x: Float[Array, "C H W"],
        eps: Float[Array, "C H W"],
        level: NoiseLevel,
        cond: Conditioning,
        *,
        key: PRNGKeyArray | None,
    ) -> Float[Array, ""]: ...


def _forward(denoiser: Denoiser, level: NoiseLevel, x, eps, cond, key):
    alpha, sigma = alpha_sigma(level.logsnr)
    z = alpha * x + sigma * eps
    return alpha, sigma, z, denoiser.output(z, level.logsnr, cond, key=key)


def _time_weight(schedule: Schedule, level: NoiseLevel) -> Float[Array, "*batch"]:
    # Losses defined as an expectation over t ~ U[0, 1] on the example's schedule have
    # omega = dt/dlambda; as a ratio, exactly 1 under the schedule proposal.
    return level.inverse_density / -schedule.dlogsnr_dt(level.t)


class WeightedEpsLoss(Loss):
    r"""Kingma & Gao's weighted loss, $\omega(\lambda) = \tfrac12 w(\lambda)$ on the
    $\epsilon$-residual: the estimate is
    $\tfrac12\, w(\lambda) / p(\lambda)\, \|\epsilon - \hat\epsilon\|^2$ (mean over
    pixels). Under [`spectral_diffusion.ScheduleProposal`][], $1/p = -d\lambda/dt$ of
    the example's own schedule (per instance for spectral schedules).

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

    weighting: SigmoidWeighting = SigmoidWeighting()
    multiscale_base: int | None = None

    def weight(self, level: NoiseLevel) -> Float[Array, "*batch"]:
        r"""$\tfrac12\, w(\lambda) / p(\lambda)$, the weight of the squared
        $\epsilon$-residual (any batch shape)."""
        return 0.5 * self.weighting(level.logsnr) * level.inverse_density

    def __call__(self, denoiser, schedule, x, eps, level, cond, *, key):
        alpha, sigma, z, out = _forward(denoiser, level, x, eps, cond, key)
        eps_hat = denoiser.parameterisation.to_eps(out, z, alpha, sigma)
        return self.weight(level) * _squared_error(eps - eps_hat, self.multiscale_base)


class EpsLoss(Loss):
    r"""Unweighted $\|\epsilon - \hat\epsilon\|^2$ (Ho et al.): the expectation over
    $t \sim U[0, 1]$ on the example's schedule, whatever the proposal."""

    multiscale_base: int | None = None

    def __call__(self, denoiser, schedule, x, eps, level, cond, *, key):
        alpha, sigma, z, out = _forward(denoiser, level, x, eps, cond, key)
        eps_hat = denoiser.parameterisation.to_eps(out, z, alpha, sigma)
        error = _squared_error(eps - eps_hat, self.multiscale_base)
        return _time_weight(schedule, level) * error


class VLoss(Loss):
    r"""$\|v - \hat v\|^2$ with $v = \alpha\epsilon - \sigma x$ (Salimans & Ho): the
    expectation over $t \sim U[0, 1]$ on the example's schedule, whatever the
    proposal."""

    multiscale_base: int | None = None

    def __call__(self, denoiser, schedule, x, eps, level, cond, *, key):
        alpha, sigma, z, out = _forward(denoiser, level, x, eps, cond, key)
        x_hat = denoiser.parameterisation.to_x(out, z, alpha, sigma)
        eps_hat = (z - alpha * x_hat) / sigma
        v, v_hat = alpha * eps - sigma * x, alpha * eps_hat - sigma * x_hat
        return _time_weight(schedule, level) * _squared_error(v - v_hat, self.multiscale_base)


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
    proposal: Proposal = ScheduleProposal(),
    groups: int = 1,
) -> Float[Array, ""]:
    r"""Mean loss over a batch, at noise levels drawn by `proposal` with stratified
    quantiles.

    $u_i = (u + i/B) \bmod 1$ for one $u \sim U[0, 1)$ (see
    [`spectral_diffusion.noise_levels`][]): the batch covers the proposal's quantiles
    evenly, which lowers the variance of the loss estimate. Per-instance (batched
    [`spectral_diffusion.PiecewiseLinear`][]) and shared schedules go through the same
    code: the per-example loss is mapped over the schedule's batch axis if it has one.
    Labels are replaced by the null class `num_classes` with probability
    `label_dropout` (for classifier-free guidance). The conditioning carries each
    example's $\lambda(0)$ and $\lambda(1)$.

    **Arguments:**

    - `loss`: a [`spectral_diffusion.Loss`][].
    - `denoiser`: the [`spectral_diffusion.Denoiser`][] being trained.
    - `schedule`: one shared schedule or one per example; the denoiser is conditioned
        on its end points.
    - `x`, `labels`: the batch.
    - `key`: randomness of the noise levels, the noise, label dropout and the network.
    - `label_dropout`, `num_classes`: classifier-free guidance training.
    - `proposal`: how noise levels are drawn; the default
        [`spectral_diffusion.ScheduleProposal`][] is $t \sim U[0, 1)$ on each
        example's schedule. [`spectral_diffusion.TruncatedProposal`][] estimates the
        same objective with lower variance for tight per-instance schedules.
    - `groups`: compute the per-example losses as this many independent slices of the
        batch (the same values; on CPU the slices' kernels run side by side, which the
        trainer uses: see the Benchmarks page). 1 or a divisor of the batch size. For
        the library's [`spectral_diffusion.UViT`][] only its transformer is computed
        in groups and its convolutions on the whole batch, which trains faster on
        CPU.
    """
    batch = x.shape[0]
    groups = as_integer(groups, "groups", 1)
    if batch % groups:
        raise ValueError(f"`groups` {groups} must divide the batch size {batch}.")
    t_key, eps_key, drop_key, net_key = jax.random.split(key, 4)
    levels = noise_levels(proposal, schedule, batch, key=t_key)
    eps = jax.random.normal(eps_key, x.shape, x.dtype)
    dropped = jax.random.bernoulli(drop_key, label_dropout, (batch,))
    labels = jnp.where(dropped, num_classes, labels)

    def one(schedule, x, eps, level, label, key):
        cond = Conditioning.of(schedule, label)
        return loss(denoiser, schedule, x, eps, level, cond, key=key)

    axes = (schedule_axis(schedule), 0, 0, 0, 0, 0)
    args = (schedule, x, eps, levels, labels, jax.random.split(net_key, batch))
    mapped = jax.vmap(one, in_axes=axes)
    if groups > 1 and getattr(denoiser.net, "_groups_inside", False):
        with network_groups(groups, batch):  # the U-ViT: its transformer in groups
            return jnp.mean(mapped(*args))
    return jnp.mean(in_groups(mapped, args, axes, groups))
