r"""Tight per-instance schedules built from a RAPSD (SPEC §3)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._bounds import BITS, EPS_HI, EPS_LO, bounds_of_floored, check_is_spectrum, floored_rapsd
from .._checks import as_integer, as_real, check_choice, check_min_ndim, check_open_unit
from .._custom_types import RAPSD, IntScalar, RealScalar
from ._linear import PiecewiseLinear


#: Share of the power-focused schedule inside the frequency-focused one. Where the
#: spectral envelope is flat the frontier alone would stall (equal knots); this
#: share keeps every schedule strictly decreasing while moving it by at most 1e-4
#: of its logSNR range.
TIE_BREAK_SHARE = 1e-4

#: Mixing weight of the frequency-focused schedule for each `kind`; `None` means
#: "use the `weight` argument".
_KIND_WEIGHTS = {"power": 0.0, "frequency": 1.0, "mixed": None}


def _log_frontier(t: np.ndarray, top_bin: int) -> np.ndarray:
    # Equal octaves per unit time: r = (R + 1)^(1 - t) - 1.
    return (top_bin + 1.0) ** (1.0 - t) - 1.0


def _linear_frontier(t: np.ndarray, top_bin: int) -> np.ndarray:
    # Equal numbers of bands per unit time.
    return (1.0 - t) * top_bin


_FRONTIERS = {"log": _log_frontier, "linear": _linear_frontier}


def _frequency_progress(power: RAPSD, t: np.ndarray, spacing: str) -> Float[Array, "*batch knots"]:
    r"""$(l(r(t)) - l(0)) / (l(R) - l(0))$: 1 at $t = 0$, 0 at $t = 1$, non-increasing."""
    top_bin = power.shape[-1] - 1
    # -log of the non-increasing envelope E_b = max_{b' >= b} P~_b': the logSNR at
    # which band b (and every band above it) crosses SNR = 1.
    crossing = -jnp.log(jax.lax.cummax(power, axis=power.ndim - 1, reverse=True))
    radius = _FRONTIERS[spacing](t, top_bin)
    # The frontier radii are static, so interpolation is two static gathers.
    left = np.clip(np.floor(radius).astype(np.int32), 0, max(top_bin - 1, 0))
    right = np.minimum(left + 1, top_bin)
    fraction = _batched(radius - left, power)
    at_frontier = crossing[..., left] * (1.0 - fraction) + crossing[..., right] * fraction
    span = crossing[..., -1:] - crossing[..., :1]
    # A flat envelope (e.g. an all-zero image: every band is the floor q) has no
    # frequency structure to follow; fall back to the power-focused progress.
    flat = span <= 0
    progress = (at_frontier - crossing[..., :1]) / jnp.where(flat, 1.0, span)
    return jnp.where(flat, _batched(1.0 - t, power), progress)


def _batched(values: np.ndarray, like: RAPSD) -> Float[Array, "*batch knots"]:
    """Static per-knot values broadcast to the batch shape of `like`, in its dtype."""
    return jnp.broadcast_to(jnp.asarray(values, like.dtype), (*like.shape[:-1], len(values)))


def spectral_schedule(
    rapsd: ArrayLike,
    *,
    kind: str = "mixed",
    weight: RealScalar = 0.5,
    spacing: str = "log",
    num_knots: IntScalar = 64,
    eps_hi: RealScalar = EPS_HI,
    eps_lo: RealScalar = EPS_LO,
    bits: IntScalar | None = BITS,
) -> PiecewiseLinear:
    r"""The tight schedule of each image, from its RAPSD.

    Endpoints are the bounds of [`spectral_diffusion.logsnr_bounds`][]:
    $\lambda(0) = \lambda_\max$, $\lambda(1) = \lambda_\min$. In between:

    - `"power"`: $\lambda_P(t) = (1 - t)\lambda_\max + t\lambda_\min$, equal log-power
      per unit time.
    - `"frequency"`: with the envelope $E_b = \max_{b' \ge b} \tilde P_{b'}$,
      $l(r) = -\log E(r)$ (linear between bins) and a frontier radius $r(t)$ from the
      Nyquist bin $R$ at $t = 0$ to DC at $t = 1$,
      $\lambda_F(t) = \lambda_\min + (\lambda_\max - \lambda_\min)
      \frac{l(r(t)) - l(0)}{l(R) - l(0)}$: the bands are uncovered from fine to
      coarse at the rate `spacing` sets. A share `TIE_BREAK_SHARE` of
      $\lambda_P$ keeps it strictly decreasing along flat stretches of $E$.
    - `"mixed"`: $\lambda_M = w \lambda_F + (1 - w) \lambda_P$ with $w$ = `weight`.

    **Arguments:**

    - `rapsd`: shape `(..., R + 1)`; leading axes give one schedule per example.
    - `kind`: `"power"`, `"frequency"` or `"mixed"`.
    - `weight`: $w \in [0, 1]$, used by `"mixed"` only.
    - `spacing`: frontier spacing, `"log"` ($r(t) = (R+1)^{1-t} - 1$, equal octaves
        per unit time) or `"linear"` ($r(t) = (1 - t) R$).
    - `num_knots`: number of knots $K + 1 \ge 2$ at $t_j = j / K$.
    - `eps_hi`, `eps_lo`, `bits`: as in [`spectral_diffusion.logsnr_bounds`][].

    **Returns:**

    A [`spectral_diffusion.PiecewiseLinear`][] with knots of shape
    `(..., num_knots)`.

    **Raises:**

    `ValueError` for an unknown `kind` or `spacing`, `weight` outside [0, 1],
    `num_knots < 2`, and everything [`spectral_diffusion.logsnr_bounds`][] refuses.
    """
    check_choice(kind, "kind", _KIND_WEIGHTS)
    check_choice(spacing, "spacing", _FRONTIERS)
    weight = as_real(weight, "weight", low=0.0, high=1.0)
    num_knots = as_integer(num_knots, "num_knots", 2)
    eps_hi = check_open_unit(eps_hi, "eps_hi")
    eps_lo = check_open_unit(eps_lo, "eps_lo")
    w = _KIND_WEIGHTS[kind]
    w = float(weight) if w is None else w

    check_is_spectrum(rapsd, None)
    power = floored_rapsd(rapsd, bits)
    logsnr_min, logsnr_max = bounds_of_floored(power, eps_hi, eps_lo)
    t = np.linspace(0.0, 1.0, num_knots)
    power_progress = _batched(1.0 - t, power)
    frequency_progress = (1.0 - TIE_BREAK_SHARE) * _frequency_progress(
        power, t, spacing
    ) + TIE_BREAK_SHARE * power_progress
    progress = w * frequency_progress + (1.0 - w) * power_progress
    knots = (1.0 - progress) * logsnr_min[..., None] + progress * logsnr_max[..., None]
    # The ends are the bounds by definition; pin them against float32 rounding of
    # the progress (e.g. (1 - share) + share != 1).
    knots = knots.at[..., 0].set(logsnr_max).at[..., -1].set(logsnr_min)
    return PiecewiseLinear(knots)


def global_spectral_schedule(rapsd_batch: ArrayLike, **kwargs) -> PiecewiseLinear:
    r"""One schedule for a whole data set, from its mean RAPSD.

    The non-per-instance ablation: [`spectral_diffusion.spectral_schedule`][]
    applied to $\bar P_b = \operatorname{mean}_n P_{n,b}$ over all leading axes.

    **Arguments:**

    - `rapsd_batch`: shape `(N, ..., R + 1)` with at least one example.
    - `**kwargs`: the keyword arguments of [`spectral_diffusion.spectral_schedule`][].

    **Returns:**

    A [`spectral_diffusion.PiecewiseLinear`][] with knots of shape `(num_knots,)`.

    **Raises:**

    `ValueError` for an empty data set, fewer than 2 dimensions, and everything
    [`spectral_diffusion.spectral_schedule`][] refuses.
    """
    check_min_ndim(rapsd_batch, "rapsd_batch", 2, "(N, ..., bins)")
    shape = jnp.shape(rapsd_batch)
    if math.prod(shape[:-1]) == 0:
        raise ValueError(f"`rapsd_batch` is an empty data set (shape {shape}).")
    mean = jnp.mean(jnp.asarray(rapsd_batch), axis=tuple(range(len(shape) - 1)))
    return spectral_schedule(mean, **kwargs)
