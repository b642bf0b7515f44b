"""Generation for the tables: DDIM along per-example schedules, in fixed-size jitted
batches split over every device, or on one CPU device over host threads."""

import functools
from collections.abc import Callable

import jax
import numpy as np
from tqdm import tqdm

import spectral_diffusion as sd
from spectral_diffusion._compile import filter_jit, host_slices, in_threads


def _sample_batch_impl(denoise, knots, cond, z1, nfe: int, noise_filter):
    def one(knots, cond, z):
        schedule = sd.PiecewiseLinear(knots)
        return sd.ddim(denoise, schedule, z, nfe, cond=cond, noise_filter=noise_filter)

    return jax.vmap(one)(knots, cond, z1)


@functools.cache
def _sample_batch():
    # Built on first use, not at import: the backend must not start before
    # `jax.distributed.initialize()` and users' device flags.
    return filter_jit(_sample_batch_impl, program="sample")


def sample_batch(denoise, knots, cond, z1, nfe: int, noise_filter=None):
    """One jitted batch of DDIM samples (`z1` `(B, C, H, W)`, `knots` `(B, K)`). On one
    CPU device it runs in slices of at least 8 examples, shared out among host threads
    that run side by side (`spectral_diffusion._compile.in_threads` and `host_slices`):
    the same samples, bit for bit, and faster on one core as on several; on CPU the
    program uses YNNPACK's convolutions and dots (`compiler_options("sample")`)."""
    args = (denoise, knots, cond, z1, nfe, noise_filter)
    axes = (None, 0, 0, 0, None, None)
    slices, threads = host_slices(len(z1))
    return in_threads(_sample_batch(), args, axes, threads, slices)


def sample(
    denoise: Callable,
    knots: np.ndarray,
    cond: sd.Conditioning,
    z1: np.ndarray,
    nfe: int,
    *,
    batch_size: int,
    noise_filter=None,
    desc: str = "sample",
    progress: bool = True,
) -> np.ndarray:
    """DDIM samples along per-example schedule knots `(N, K)`, the denoiser conditioned
    on `cond` (fields `(N,)`: each example's label, λ(0), λ(1)), in jitted batches of a
    fixed size (the last one padded), with a progress bar. Each batch is split over
    all devices (the trainer's data mesh) when its size allows."""
    devices = jax.device_count()
    sharding = sd.data.batch_sharding() if devices > 1 and batch_size % devices == 0 else None
    out = []
    batches = range(0, len(z1), batch_size)
    for start in tqdm(batches, desc=desc, leave=False, disable=not progress):
        # Padded by wrapping around, so every call has the compiled batch shape.
        index = np.arange(start, start + batch_size) % len(z1)
        padded = jax.tree.map(
            lambda a: jax.device_put(np.asarray(a)[index], sharding), (knots, cond, z1)
        )
        x = sample_batch(denoise, *padded, nfe, noise_filter)
        out.append(np.asarray(x)[: min(batch_size, len(z1) - start)])
    return np.clip(np.concatenate(out), -1.0, 1.0)
