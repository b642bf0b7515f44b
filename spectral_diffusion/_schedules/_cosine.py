"""The cosine schedule and simple diffusion's resolution-shifted variants."""

import math

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_less, check_positive, check_time
from .._custom_types import LogSNR, Time
from ._base import Schedule, invert_decreasing


#: logSNR range of the cosine baselines (simple diffusion clips to [-15, 15]).
COSINE_LOGSNR_MIN = -15.0
COSINE_LOGSNR_MAX = 15.0


class Cosine(Schedule):
    r"""The $\alpha$-cosine schedule, truncated to $[\lambda_\min, \lambda_\max]$.

    $$\lambda(t) = -2 \log \tan\bigl(a + t (b - a)\bigr), \quad
      a = \arctan e^{-\lambda_\max/2},\; b = \arctan e^{-\lambda_\min/2},$$

    so $\lambda(0) = \lambda_\max$ and $\lambda(1) = \lambda_\min$ exactly.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{nichol2021improved,
          title={Improved Denoising Diffusion Probabilistic Models},
          author={Nichol, Alexander Quinn and Dhariwal, Prafulla},
          booktitle={International Conference on Machine Learning},
          year={2021}
        }
        ```
    """

    logsnr_min: Float[ArrayLike, ""]
    logsnr_max: Float[ArrayLike, ""]

    def __init__(
        self,
        logsnr_min: Float[ArrayLike, ""] = COSINE_LOGSNR_MIN,
        logsnr_max: Float[ArrayLike, ""] = COSINE_LOGSNR_MAX,
    ):
        """**Arguments:**

        - `logsnr_min`: $\\lambda(1)$, the noisy end.
        - `logsnr_max`: $\\lambda(0)$, the clean end; must exceed `logsnr_min`.
        """
        self.logsnr_min, self.logsnr_max = check_less(
            logsnr_min, "logsnr_min", logsnr_max, "logsnr_max"
        )

    def _angles(self) -> tuple[Float[Array, ""], Float[Array, ""]]:
        a = jnp.arctan(jnp.exp(-0.5 * jnp.asarray(self.logsnr_max)))
        b = jnp.arctan(jnp.exp(-0.5 * jnp.asarray(self.logsnr_min)))
        return a, b

    def logsnr(self, t: Time) -> Float[Array, "..."]:
        return self._logsnr(check_time(t))

    def _logsnr(self, t: Time) -> Float[Array, "..."]:
        a, b = self._angles()
        return -2.0 * jnp.log(jnp.tan(a + jnp.asarray(t) * (b - a)))

    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        a, b = self._angles()
        return (jnp.arctan(jnp.exp(-0.5 * jnp.asarray(lam))) - a) / (b - a)

    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        t = check_time(t)
        a, b = self._angles()
        # d/du [-2 log tan u] = -2 / (sin u cos u) = -4 / sin 2u
        return -4.0 * (b - a) / jnp.sin(2.0 * (a + t * (b - a)))


def _resolution_shift(base: int | float, resolution: int | float) -> float:
    # Averaging s x s pixels multiplies the SNR by s^2, so a schedule tuned at
    # `base` keeps its per-area SNR at `resolution` when shifted by 2 log(base/res).
    return 2.0 * math.log(base / resolution)


class ShiftedCosine(Schedule):
    r"""Simple diffusion's shifted cosine: the cosine schedule of [`spectral_diffusion.Cosine`][]
    plus $2 \log(\text{base} / \text{resolution})$.

    The shift keeps the signal-to-noise ratio of a `base`-pixel image at the same
    level at `resolution` pixels, so $\lambda(0) = \lambda_\max + \text{shift}$ and
    $\lambda(1) = \lambda_\min + \text{shift}$.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{hoogeboom2023simple,
          title={simple diffusion: End-to-end diffusion for high resolution images},
          author={Hoogeboom, Emiel and Heek, Jonathan and Salimans, Tim},
          booktitle={International Conference on Machine Learning},
          year={2023}
        }
        ```
    """

    resolution: int | float = eqx.field(static=True)
    base: int | float = eqx.field(static=True)
    cosine: Cosine

    def __init__(
        self,
        resolution: int | float,
        base: int | float = 64,
        logsnr_min: Float[ArrayLike, ""] = COSINE_LOGSNR_MIN,
        logsnr_max: Float[ArrayLike, ""] = COSINE_LOGSNR_MAX,
    ):
        """**Arguments:**

        - `resolution`: image size in pixels (positive).
        - `base`: the resolution the unshifted cosine is tuned for (positive).
        - `logsnr_min`, `logsnr_max`: range of the cosine before the shift.
        """
        check_positive(resolution, "resolution")
        check_positive(base, "base")
        self.resolution = resolution
        self.base = base
        self.cosine = Cosine(logsnr_min, logsnr_max)

    @property
    def shift(self) -> float:
        r"""$2 \log(\text{base} / \text{resolution})$."""
        return _resolution_shift(self.base, self.resolution)

    def logsnr(self, t: Time) -> Float[Array, "..."]:
        return self.cosine.logsnr(t) + self.shift

    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        return self.cosine.t_of_logsnr(jnp.asarray(lam) - self.shift)

    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        return self.cosine.dlogsnr_dt(t)


class InterpolatedCosine(Schedule):
    r"""Simple diffusion's interpolated cosine (the SiD2 baseline schedule).

    $$\lambda(t) = t\, \lambda_\text{shifted(low)}(t) + (1 - t)\, \lambda_\text{shifted(high)}(t)
               = \lambda_\cos(t) + s_\text{high} + t\,(s_\text{low} - s_\text{high}),$$

    with $s_x = 2 \log(x / \text{resolution})$: the high-resolution shift near the
    data and the low-resolution shift near the noise. Strictly decreasing because
    `low <= high`. The inverse has no closed form and is computed by bisection to
    float32 precision.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{hoogeboom2025simpler,
          title={Simpler Diffusion: 1.5 FID on ImageNet512 with pixel-space diffusion},
          author={Hoogeboom, Emiel and Mensink, Thomas and Heek, Jonathan and Lamerigts,
                  Kay and Gao, Ruiqi and Salimans, Tim},
          booktitle={Conference on Computer Vision and Pattern Recognition},
          year={2025}
        }
        ```
    """

    resolution: int | float = eqx.field(static=True)
    low: int | float = eqx.field(static=True)
    high: int | float = eqx.field(static=True)
    cosine: Cosine

    def __init__(
        self,
        resolution: int | float,
        low: int | float = 32,
        high: int | float | None = None,
        logsnr_min: Float[ArrayLike, ""] = COSINE_LOGSNR_MIN,
        logsnr_max: Float[ArrayLike, ""] = COSINE_LOGSNR_MAX,
    ):
        """**Arguments:**

        - `resolution`: image size in pixels (positive).
        - `low`: base resolution of the shift at $t = 1$ (positive).
        - `high`: base resolution of the shift at $t = 0$; `None` means `resolution`
            (no shift at the clean end). Must be at least `low`.
        - `logsnr_min`, `logsnr_max`: range of the cosine before the shifts.
        """
        high = resolution if high is None else high
        for name, value in (("resolution", resolution), ("low", low), ("high", high)):
            check_positive(value, name)
        if low > high:
            raise ValueError(f"`low` must not exceed `high`, got low={low!r}, high={high!r}.")
        self.resolution = resolution
        self.low = low
        self.high = high
        self.cosine = Cosine(logsnr_min, logsnr_max)

    def _shifts(self) -> tuple[float, float]:
        return (
            _resolution_shift(self.low, self.resolution),
            _resolution_shift(self.high, self.resolution),
        )

    def logsnr(self, t: Time) -> Float[Array, "..."]:
        return self._logsnr(check_time(t))

    def _logsnr(self, t: Time) -> Float[Array, "..."]:
        s_low, s_high = self._shifts()
        return self.cosine._logsnr(t) + s_high + t * (s_low - s_high)

    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        # Bisection evaluates inside [0, 1] only: no need to check every midpoint.
        return invert_decreasing(self._logsnr, lam)

    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        s_low, s_high = self._shifts()
        return self.cosine.dlogsnr_dt(t) + (s_low - s_high)
