"""DDIM (deterministic) and DDPM (ancestral) sampling, and every eta between."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import as_real
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


def ddim(
    denoise: DenoiseFn,
    schedule: Schedule,
    z1: ArrayLike,
    num_steps: IntScalar,
    *,
    cond=None,
    eta: RealScalar = 0.0,
    key: PRNGKeyArray | None = None,
    noise_filter: NoiseFilter | None = None,
    return_stats: bool = False,
) -> Float[Array, "C H W"] | tuple[Float[Array, "C H W"], SampleStats]:
    r"""DDIM sampling; `eta=1` is DDPM ancestral sampling.

    On the grid $t_i = 1 - i/N$ with $\lambda_i = \lambda(t_i)$, each step from $s = t_i$
    to $t = t_{i+1}$ computes $\hat x = \text{denoise}(z_s, \lambda_s)$,
    $\hat\epsilon = (z_s - \alpha_s \hat x)/\sigma_s$ and

    $$z_t = \alpha_t \hat x + \sqrt{\sigma_t^2 - c^2}\,\hat\epsilon + c\,\xi, \qquad
      c^2 = \eta^2 \sigma_t^2 \bigl(1 - e^{\lambda_s - \lambda_t}\bigr),$$

    with $\xi \sim \mathcal N(0, I)$ drawn from `fold_in(key, i)`. $c^2$ at $\eta = 1$ is
    the variance of the forward-process posterior $q(z_t \mid z_s, x)$. The last step
    lands on $t_N = 0$ and the sampler returns $z_0 / \alpha(0)$.

    **Arguments:**

    - `denoise`: `denoise(z, lam, cond) -> x_hat` for one example.
    - `schedule`: any [`spectral_diffusion.Schedule`][]; for one schedule per
        example, `jax.vmap` over a batched [`spectral_diffusion.PiecewiseLinear`][].
    - `z1`: the initial sample, usually $\mathcal N(0, I)$, shape `(C, H, W)`.
    - `num_steps`: $N$, the number of denoiser evaluations.
    - `cond`: passed to `denoise` unchanged. `None` (the default) with a library
        [`spectral_diffusion.Denoiser`][] means unconditional: the null class with
        the schedule's end points ([`spectral_diffusion.Conditioning.of`][]).
    - `eta`: 0 for DDIM, 1 for DDPM; any value in [0, 1].
    - `key`: required when `eta > 0`.
    - `noise_filter`: a linear map applied to `z1` and to every $\xi$ (e.g.
        [`spectral_diffusion.TDAS`][]).
    - `return_stats`: also return a [`spectral_diffusion.SampleStats`][] (every
        sampler takes this flag and reports the same way).

    **Returns:**

    The sample, shape and dtype of `z1`; with `return_stats`, `(sample, stats)`.

    **Raises:**

    `ValueError` for a non-positive `num_steps`, `eta` outside [0, 1], a missing
    `key`, a batched schedule, a `z1` that is not one floating `(C, H, W)` example,
    a `denoise` whose output shape differs from `z1`, or NaN/inf in `z1` or the
    result.

    ??? cite "Reference"

        ```bibtex
        @inproceedings{song2021denoising,
          title={Denoising Diffusion Implicit Models},
          author={Song, Jiaming and Meng, Chenlin and Ermon, Stefano},
          booktitle={International Conference on Learning Representations},
          year={2021}
        }
        ```
    """
    num_steps = check_num_steps(num_steps)
    check_per_example(schedule)
    eta = as_real(eta, "eta", low=0.0, high=1.0)
    stochastic = eta > 0
    if stochastic and key is None:
        raise ValueError("`key` is required when `eta > 0` (the sampler injects noise).")
    cond = conditioning_for(denoise, schedule, cond)
    z = check_start(z1, noise_filter)
    lam = schedule.logsnr_grid(num_steps, working_dtype(z))

    def step(i, z):
        lam_s, lam_t = lam[i], lam[i + 1]
        alpha_s, sigma_s = alpha_sigma(lam_s)
        alpha_t, sigma_t = alpha_sigma(lam_t)
        x_hat = denoised(denoise, z, lam_s, cond)
        eps_hat = (z - alpha_s * x_hat) / sigma_s
        if not stochastic:
            return alpha_t * x_hat + sigma_t * eps_hat
        # -expm1 keeps 1 - e^(lam_s - lam_t) accurate for small steps.
        c2 = eta**2 * sigma_t**2 * -jnp.expm1(lam_s - lam_t)
        xi = jax.random.normal(jax.random.fold_in(key, i), z.shape, z.dtype)
        if noise_filter is not None:
            xi = noise_filter(xi)
        return alpha_t * x_hat + jnp.sqrt(sigma_t**2 - c2) * eps_hat + jnp.sqrt(c2) * xi

    z = jax.lax.fori_loop(0, num_steps, step, z)
    alpha_0, _ = alpha_sigma(lam[-1])
    return finish(z / alpha_0, num_steps, return_stats)
