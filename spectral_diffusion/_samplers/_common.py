"""What every sampler shares: the denoiser contract and the checks."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import check_finite, fail_if
from .._nets import Conditioning
from .._schedules import Schedule


#: `denoise(z, lam, cond) -> x_hat`: the clean-image estimate from a noisy image `z`
#: at logSNR `lam` (a scalar), for one example. Every sampler takes one; a
#: `spectral_diffusion.Denoiser` (network + parameterisation) is one, and so is
#: `GaussianSpectral.denoise`.
DenoiseFn = Callable[[Float[Array, "C H W"], Float[Array, ""], Any], Float[Array, "C H W"]]
#: A linear map applied to the initial sample and to injected noise (see TDAS).
NoiseFilter = Callable[[Float[Array, "C H W"]], Float[Array, "C H W"]]


class SampleStats(NamedTuple):
    """What a sampler reports besides its sample (with `return_stats=True`)."""

    #: Calls of `denoise` the solve made (fixed-step samplers: one per step, or per
    #: solver stage; an adaptive ODE solve: steps x stages, less FSAL reuse).
    num_function_evaluations: Int[Array, ""]


def finish(
    x: Float[Array, "..."], evaluations: ArrayLike, return_stats: bool
) -> Float[Array, "..."] | tuple[Float[Array, "..."], SampleStats]:
    """The checked sample, with its stats when asked for."""
    x = check_result(x)
    if not return_stats:
        return x
    return x, SampleStats(jnp.asarray(evaluations, jnp.int32))


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


def conditioning_for(denoise: DenoiseFn, schedule: Schedule, cond: Any) -> Any:
    """`cond`, or where it is `None` and `denoise` knows its classes (a library
    `Denoiser`, or guidance around one), the unconditional conditioning of
    `schedule`: the null class with the schedule's end points."""
    num_classes = getattr(denoise, "num_classes", None)
    if cond is None and num_classes is not None:
        return Conditioning.of(schedule, num_classes)
    return cond


def check_start(z1: ArrayLike, noise_filter: NoiseFilter | None) -> Float[Array, "C H W"]:
    """The initial sample: one example `(C, H, W)`, floating, finite; filtered."""
    z1 = jnp.asarray(z1)
    if not jnp.issubdtype(z1.dtype, jnp.floating):
        raise ValueError(
            f"`z1` must be a floating-point array (the initial noise), got dtype {z1.dtype}: "
            "draw it with `jax.random.normal(key, (C, H, W))`."
        )
    if z1.ndim != 3:
        raise ValueError(
            f"`z1` must be one example of shape (C, H, W), got shape {z1.shape}; for a "
            "batch, map over it: jax.vmap(lambda z: sampler(denoise, schedule, z, ...))(z1)."
        )
    z1 = check_finite(z1, "z1")
    if noise_filter is None:
        return z1
    filtered = noise_filter(z1)
    if jnp.shape(filtered) != z1.shape:
        raise ValueError(
            f"`noise_filter` returned shape {jnp.shape(filtered)} for noise of shape "
            f"{z1.shape}; it must keep the shape."
        )
    return filtered


def denoised(
    denoise: DenoiseFn, z: Float[Array, "C H W"], lam: Float[Array, ""], cond: Any
) -> Float[Array, "C H W"]:
    """`denoise(z, lam, cond)`, refused at trace time unless it has the shape of `z`
    (a wrong shape would otherwise broadcast silently into the update)."""
    x_hat = denoise(z, lam, cond)
    if jnp.shape(x_hat) != z.shape:
        raise ValueError(
            f"`denoise` returned shape {jnp.shape(x_hat)} for `z` of shape {z.shape}: it "
            "must return the clean-image estimate x_hat, with the shape of `z`."
        )
    return x_hat


def working_dtype(z: Float[Array, "..."]) -> jnp.dtype:
    """The dtype of the grid, the schedule values and the solver times: that of the
    sample, at least float32 (float64 under `JAX_ENABLE_X64` stays float64)."""
    if jnp.issubdtype(z.dtype, jnp.floating) and jnp.finfo(z.dtype).bits >= 32:
        return z.dtype
    return jnp.dtype(jnp.float32)


def check_result(x: Float[Array, "..."]) -> Float[Array, "..."]:
    # The updates are linear in the denoiser output with positive weights, so a NaN
    # or inf from any step reaches the result: one check at the end catches it.
    return fail_if(
        x,
        ~jnp.all(jnp.isfinite(x)),
        "The sample is NaN or inf: the denoiser returned non-finite values.",
    )
