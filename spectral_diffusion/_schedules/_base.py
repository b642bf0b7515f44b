"""The abstract noise schedule."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import as_integer
from .._custom_types import IntScalar, LogSNR, Time


def alpha_sigma(lam: LogSNR) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""$(\alpha, \sigma)$ at logSNR $\lambda$: $\alpha^2 = \operatorname{sigmoid}(\lambda)$,
    $\sigma^2 = \operatorname{sigmoid}(-\lambda)$, so $\alpha^2 + \sigma^2 = 1$.

    Computed through the log-sigmoid of $\pm\lambda$ rather than $1 - \alpha^2$, so
    $\sigma$ keeps full relative precision at high logSNR, and values and gradients
    stay finite at any finite logSNR (where $\sqrt{\operatorname{sigmoid}}$ would
    differentiate $\sqrt{0}$). The one home of this formula: schedules, losses,
    networks, samplers and the Gaussian oracle all call it. Elementwise; keeps the
    dtype of `lam`.
    """
    lam = jnp.asarray(lam)
    return jnp.exp(0.5 * jax.nn.log_sigmoid(lam)), jnp.exp(0.5 * jax.nn.log_sigmoid(-lam))


def check_num_steps(num_steps: IntScalar) -> int:
    """`num_steps` as a Python int >= 1 (numpy/JAX integers accepted)."""
    return as_integer(num_steps, "num_steps", 1)


def time_grid(num_steps: IntScalar, dtype=np.float32) -> np.ndarray:
    r"""The sampling grid $t_i = 1 - i / N$, $i = 0..N$, as a static numpy array.

    Every sampler steps along it (the denoiser runs at $t_0..t_{N-1}$), and
    [`spectral_diffusion.PiecewiseLinear.on_grid`][] samples a schedule on it.

    **Arguments:**

    - `num_steps`: $N \geq 1$.
    - `dtype`: of the result; samplers pass the dtype of their initial sample.
    """
    num_steps = check_num_steps(num_steps)
    return (1.0 - np.arange(num_steps + 1) / num_steps).astype(dtype)


class Schedule(eqx.Module):
    r"""A variance-preserving noise schedule $t \mapsto \lambda(t)$.

    $\lambda = \log(\alpha^2 / \sigma^2)$ is the log signal-to-noise ratio, with
    $\alpha^2 = \operatorname{sigmoid}(\lambda)$, $\sigma^2 = \operatorname{sigmoid}(-\lambda)$
    and $z_t = \alpha_t x + \sigma_t \epsilon$. Time runs over $[0, 1]$: $t = 0$ is
    clean data, $t = 1$ is noise, and every schedule is strictly decreasing in $t$.

    All methods are elementwise in `t` (or `lam`): any shape goes in, the same shape
    comes out (broadcast against the batch axes of a batched
    [`spectral_diffusion.PiecewiseLinear`][]). Times outside $[0, 1]$ or NaN raise a
    `ValueError` (through `equinox.error_if` when `t` is traced), where a formula
    would otherwise return NaN or a value no schedule defines.
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

        See [`spectral_diffusion.alpha_sigma`][], which this applies to $\lambda(t)$.
        """
        return alpha_sigma(self.logsnr(t))

    def logsnr_grid(self, num_steps: IntScalar, dtype=np.float32) -> Float[Array, "... grid"]:
        r"""$\lambda(t_i)$ on the sampling grid $t_i = 1 - i/N$ (see
        [`spectral_diffusion.time_grid`][]), from noise to data; the grid is the last
        axis, after the batch axes of a batched schedule."""
        t = time_grid(num_steps, dtype)
        batch = self.batch_shape
        return jnp.moveaxis(self.logsnr(t.reshape(-1, *(1,) * len(batch))), 0, -1)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The batch axes: `()` for one schedule, `(B,)` for one per example."""
        return ()


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
