"""The abstract noise schedule."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import LogSNR, Time


class Schedule(eqx.Module):
    r"""A variance-preserving noise schedule $t \mapsto \lambda(t)$.

    $\lambda = \log(\alpha^2 / \sigma^2)$ is the log signal-to-noise ratio, with
    $\alpha^2 = \operatorname{sigmoid}(\lambda)$, $\sigma^2 = \operatorname{sigmoid}(-\lambda)$
    and $z_t = \alpha_t x + \sigma_t \epsilon$. Time runs over $[0, 1]$: $t = 0$ is
    clean data, $t = 1$ is noise, and every schedule is strictly decreasing in $t$.

    All methods are elementwise in `t` (or `lam`): any shape goes in, the same shape
    comes out (broadcast against the batch axes of a batched
    [`spectral_diffusion.PiecewiseLinear`][]).
    """

    @abc.abstractmethod
    def logsnr(self, t: Time) -> Float[Array, "..."]:
        r"""$\lambda(t)$."""

    @abc.abstractmethod
    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        r"""The exact inverse $t(\lambda)$ on the schedule's range $[\lambda(1), \lambda(0)]$."""

    @abc.abstractmethod
    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        r"""$d\lambda / dt$ (negative), in closed form."""

    def alpha_sigma(self, t: Time) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
        r"""$(\alpha_t, \sigma_t)$ with $\alpha^2 = \operatorname{sigmoid}(\lambda)$ and
        $\sigma^2 = \operatorname{sigmoid}(-\lambda)$, so $\alpha^2 + \sigma^2 = 1$.

        Computed through the sigmoid of $\pm\lambda$ rather than $1 - \alpha^2$, so
        $\sigma$ keeps full relative precision at high logSNR.
        """
        lam = self.logsnr(t)
        return jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))


#: Bisection halvings for a numerical inverse: 2^-40 of [0, 1] is far below the
#: float32 resolution of t, so the result is exact to working precision.
_BISECTION_STEPS = 40


def invert_decreasing(fn: Callable[[Array], Array], lam: LogSNR) -> Float[Array, "..."]:
    """Solve `fn(t) = lam` for `t` in [0, 1], elementwise, for a decreasing `fn`.

    Fixed-count bisection: jit-able, vmap-able, no data-dependent control flow.
    Values of `lam` outside `[fn(1), fn(0)]` map to the nearest end of [0, 1].
    """
    lam = jnp.asarray(lam)
    dtype = jnp.result_type(lam.dtype, jnp.float32)

    def halve(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        above = fn(mid) > lam  # still too clean: the root lies later
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo = jnp.zeros(lam.shape, dtype)
    hi = jnp.ones(lam.shape, dtype)
    lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, halve, (lo, hi))
    return 0.5 * (lo + hi)
