"""What every sampler shares: the step grid, the denoiser contract and the checks."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._checks import check_finite, fail_if
from .._schedules import Schedule


#: `denoise(z, lam, cond) -> x_hat`: the clean-image estimate from a noisy image `z`
#: at logSNR `lam` (a scalar), for one example.
Denoiser = Callable[[Float[Array, "C H W"], Float[Array, ""], Any], Float[Array, "C H W"]]
#: A linear map applied to the initial sample and to injected noise (see TDAS).
NoiseFilter = Callable[[Float[Array, "C H W"]], Float[Array, "C H W"]]


def check_num_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int | np.integer) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive integer, got {num_steps!r}.")


def check_per_example(schedule: Schedule) -> None:
    """Samplers work on one example: a batched schedule must come in through `vmap`."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"`schedule` must be a spectral_diffusion.Schedule, got {schedule!r}.")
    if jnp.shape(schedule.logsnr(0.5)) != ():
        raise ValueError(
            "`schedule` holds one schedule per example (batched knots); samplers work on "
            "one example, so map over the batch: "
            "jax.vmap(lambda s, z: sampler(denoise, s, z, ...))(schedule, z1)."
        )


def time_grid(num_steps: int) -> np.ndarray:
    """$t_i = 1 - i / N$, $i = 0..N$ (static): the denoiser runs at $t_0..t_{N-1}$."""
    return (1.0 - np.arange(num_steps + 1) / num_steps).astype(np.float32)


def logsnr_grid(schedule: Schedule, num_steps: int) -> Float[Array, " grid"]:
    return schedule.logsnr(time_grid(num_steps))


def alpha_sigma_of(lam: Float[Array, "..."]) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    return jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))


def check_start(z1: Float[Array, "..."], noise_filter: NoiseFilter | None) -> Float[Array, "..."]:
    z1 = check_finite(z1, "z1")
    return z1 if noise_filter is None else noise_filter(z1)


def check_result(x: Float[Array, "..."]) -> Float[Array, "..."]:
    # The updates are linear in the denoiser output with positive weights, so a NaN
    # or inf from any step reaches the result: one check at the end catches it.
    return fail_if(
        x,
        ~jnp.all(jnp.isfinite(x)),
        "The sample is NaN or inf: the denoiser returned non-finite values.",
    )
