"""The EDM (Karras et al.) noise levels as a variance-preserving schedule."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_less, check_positive, check_time
from .._custom_types import LogSNR, Time
from ._base import Schedule


class EDM(Schedule):
    r"""Karras et al.'s noise levels, $\lambda = -2 \log \sigma_\text{EDM}$.

    $$\sigma(t) = \bigl(\sigma_\min^{1/\rho}
                 + t\,(\sigma_\max^{1/\rho} - \sigma_\min^{1/\rho})\bigr)^\rho,$$

    where $\sigma_\text{EDM} = \sigma_t / \alpha_t$ is the noise level of the
    variance-exploding view of the same process. Uniform steps in $t$ are EDM's
    sampling steps.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{karras2022elucidating,
          title={Elucidating the Design Space of Diffusion-Based Generative Models},
          author={Karras, Tero and Aittala, Miika and Aila, Timo and Laine, Samuli},
          booktitle={Advances in Neural Information Processing Systems},
          year={2022}
        }
        ```
    """

    sigma_min: Float[ArrayLike, ""]
    sigma_max: Float[ArrayLike, ""]
    rho: Float[ArrayLike, ""]

    def __init__(
        self,
        sigma_min: Float[ArrayLike, ""] = 0.002,
        sigma_max: Float[ArrayLike, ""] = 80.0,
        rho: Float[ArrayLike, ""] = 7.0,
    ):
        """**Arguments:**

        - `sigma_min`: noise level at $t = 0$ (positive).
        - `sigma_max`: noise level at $t = 1$; must exceed `sigma_min`.
        - `rho`: the step-density exponent (positive); larger values put more
            steps near `sigma_min`.
        """
        sigma_min = check_positive(sigma_min, "sigma_min")
        self.sigma_min, self.sigma_max = check_less(sigma_min, "sigma_min", sigma_max, "sigma_max")
        self.rho = check_positive(rho, "rho")

    def _u_range(self) -> tuple[Float[Array, ""], Float[Array, ""]]:
        inv_rho = 1.0 / jnp.asarray(self.rho)
        return jnp.asarray(self.sigma_min) ** inv_rho, jnp.asarray(self.sigma_max) ** inv_rho

    def logsnr(self, t: Time) -> Float[Array, "..."]:
        t = check_time(t)
        u_min, u_max = self._u_range()
        return -2.0 * self.rho * jnp.log(u_min + t * (u_max - u_min))

    def t_of_logsnr(self, lam: LogSNR) -> Float[Array, "..."]:
        u_min, u_max = self._u_range()
        return (jnp.exp(-jnp.asarray(lam) / (2.0 * self.rho)) - u_min) / (u_max - u_min)

    def dlogsnr_dt(self, t: Time) -> Float[Array, "..."]:
        t = check_time(t)
        u_min, u_max = self._u_range()
        return -2.0 * self.rho * (u_max - u_min) / (u_min + t * (u_max - u_min))
