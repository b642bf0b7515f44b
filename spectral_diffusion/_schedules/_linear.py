"""Schedules linear in logSNR: one global line, or per-instance piecewise-linear knots."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import check_knots, check_less, check_time
from .._custom_types import IntScalar, LogSNR, Time
from ._base import Schedule


class LinearLogSNR(Schedule):
    r"""$\lambda(t) = (1 - t)\,\lambda_\max + t\,\lambda_\min$: equal logSNR per unit time."""

    logsnr_min: Float[ArrayLike, ""]
    logsnr_max: Float[ArrayLike, ""]

    def __init__(self, logsnr_min: Float[ArrayLike, ""], logsnr_max: Float[ArrayLike, ""]):
        """**Arguments:**

        - `logsnr_min`: $\\lambda(1)$.
        - `logsnr_max`: $\\lambda(0)$; must exceed `logsnr_min`.
        """
        self.logsnr_min, self.logsnr_max = check_less(
            logsnr_min, "logsnr_min", logsnr_max, "logsnr_max"
        )

    def logsnr(self, t: Time) -> Float[Array, "..."]:
        t = check_time(t)
        return (1.0 - t) * self.logsnr_max + t * self.logsnr_min

    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        return (self.logsnr_max - jnp.asarray(lam)) / (self.logsnr_max - self.logsnr_min)

    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        t = check_time(t)
        slope = jnp.asarray(self.logsnr_min - self.logsnr_max)
        return jnp.broadcast_to(slope, t.shape)


class PiecewiseLinear(Schedule):
    r"""logSNR values at $K + 1$ uniform knots $t_j = j / K$, linear in between.

    The representation of every spectral schedule. `knots` may carry leading batch
    axes, one schedule per example: then `t` (or `lam`) broadcasts against the batch
    shape, so `schedule.logsnr(t)` with `t` of shape `(B,)` evaluates example `b` at
    `t[b]`; under `jax.vmap` each example sees its own `(K + 1,)` knots.

    Like every schedule it is defined on $t \in [0, 1]$: other times (or NaN) raise.
    `t_of_logsnr` extends the end segments linearly for logSNRs outside
    $[\lambda(1), \lambda(0)]$, returning times outside $[0, 1]$ there.
    """

    knots: Float[Array, "*batch knots"]

    def __init__(self, knots: ArrayLike):
        """**Arguments:**

        - `knots`: shape `(..., K + 1)` with `K >= 1`: $\\lambda(t_j)$, strictly
            decreasing along the last axis and finite.

        **Raises:**

        `ValueError` (or an `equinox.error_if` error under `jit`) for a shape
        without two knots, NaN/inf, or knots that are not strictly decreasing.
        """
        self.knots = check_knots(knots)

    @classmethod
    def on_grid(cls, schedule: Schedule, num_steps: IntScalar) -> "PiecewiseLinear":
        r"""`schedule` sampled at the sampling grid's $N + 1$ times, as knots.

        The result's knots sit at $t_j = j/N$, so on that grid it equals `schedule`
        exactly and an $N$-step sampler takes the same steps along either; every
        schedule then shares one compiled sampler per $(N, \text{shape})$. Batch
        axes of a batched schedule are kept.

        **Arguments:**

        - `schedule`: any [`spectral_diffusion.Schedule`][].
        - `num_steps`: $N \geq 1$.
        """
        if not isinstance(schedule, Schedule):
            raise ValueError(f"`schedule` must be a spectral_diffusion.Schedule, got {schedule!r}.")
        return cls(jnp.flip(schedule.logsnr_grid(num_steps), axis=-1))

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.knots.shape[:-1]

    @property
    def num_segments(self) -> int:
        """$K$, the number of linear pieces."""
        return self.knots.shape[-1] - 1

    def _broadcast_knots(self, shape: tuple[int, ...]) -> Float[Array, "..."]:
        return jnp.broadcast_to(self.knots, (*shape, self.knots.shape[-1]))

    def _segment_of_time(self, t: Time) -> tuple[Int[Array, "..."], Float[Array, "..."]]:
        shape = jnp.broadcast_shapes(jnp.shape(t), self.knots.shape[:-1])
        position = jnp.broadcast_to(jnp.asarray(t, self.knots.dtype), shape) * self.num_segments
        index = jnp.clip(jnp.floor(position), 0, self.num_segments - 1).astype(jnp.int32)
        return index, position - index.astype(position.dtype)

    def _knot_pair(
        self, index: Int[Array, "..."]
    ) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        knots = self._broadcast_knots(index.shape)
        left = jnp.take_along_axis(knots, index[..., None], axis=-1)[..., 0]
        right = jnp.take_along_axis(knots, index[..., None] + 1, axis=-1)[..., 0]
        return left, right

    def logsnr(self, t: Time) -> Float[Array, "..."]:
        index, fraction = self._segment_of_time(check_time(t))
        left, right = self._knot_pair(index)
        return left + fraction * (right - left)

    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        shape = jnp.broadcast_shapes(jnp.shape(lam), self.knots.shape[:-1])
        lam = jnp.broadcast_to(jnp.asarray(lam, self.knots.dtype), shape)
        # Knots after the first that are still above lam: the segment lam falls in.
        above = jnp.sum(self._broadcast_knots(shape)[..., 1:] > lam[..., None], axis=-1)
        index = jnp.clip(above, 0, self.num_segments - 1).astype(jnp.int32)
        left, right = self._knot_pair(index)
        return (index.astype(lam.dtype) + (left - lam) / (left - right)) / self.num_segments

    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        index, _ = self._segment_of_time(check_time(t))
        left, right = self._knot_pair(index)
        return (right - left) * self.num_segments
