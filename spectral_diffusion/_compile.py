"""How the library compiles and batches the programs it jits itself (the train step,
the Reproduce suite's sampler) on CPU, chosen from profiles of the cpu preset (see the
Benchmarks page): compiler options, the `filter_jit` that applies them, and the split
of a training batch into independent groups."""

import functools
import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp


_YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# XLA:CPU's default YNNPACK fusions minus INDIVIDUAL_CONVOLUTION: its convolutions' backward
# pass ran 1.5x slower than XLA's own (Eigen) convolutions on the cpu preset's shapes
# (one 3x3 conv of 32x32x32x48 -> 16 channels, forward + VJP: 11.9 ms vs 7.6 ms), and
# the whole train step 7-9% slower in interleaved A/B runs. Matmuls stay on YNNPACK.
_CPU_OPTIONS = {
    _YNN_OPTION: ",".join(
        f"LIBRARY_FUSION_TYPE_{kind}" for kind in ("DOT", "REDUCE", "INDIVIDUAL_DOT")
    )
}


@functools.cache
def compiler_options() -> dict[str, str] | None:
    """Options for `jax.jit(..., compiler_options=...)`: on CPU, XLA's own convolutions
    instead of YNNPACK's; `None` on accelerators, where the user's `XLA_FLAGS` already
    set the option, or where this jaxlib does not know it (older versions)."""
    if jax.default_backend() != "cpu" or _YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(jnp.zeros(())).compile()
    except Exception:  # an unknown option or value: keep XLA's defaults
        return None
    return dict(_CPU_OPTIONS)


class filter_jit:
    """`equinox.filter_jit(fn)`, compiled with [`compiler_options`][] where it is
    called from Python. `jax.jit` accepts compiler options only at the top level, so a
    call from inside a user's `jit` (traced arguments) takes the plain compilation."""

    def __init__(self, fn: Callable):
        self.plain = eqx.filter_jit(fn)
        options = compiler_options()
        self.top = self.plain if options is None else eqx.filter_jit(fn, compiler_options=options)

    def __call__(self, *args):
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args))
        return (self.plain if traced else self.top)(*args)


def batch_groups(batch: int) -> int:
    """How many independent slices the train step computes a batch of `batch` examples
    in: on one CPU device, the most of 4 or 2 that divides the batch into slices of at
    least 8 examples (measured on the cpu preset, batch 32: 4 groups took the step from
    268 to 232 ms on 2 cores and from 426 to 399 ms on 1; 8 groups were slower again);
    1 on accelerators and over several devices (slices would cut across the batch
    sharding)."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1:
        return 1
    return next((g for g in (4, 2) if batch % g == 0 and batch // g >= 8), 1)


def in_groups(fn: Callable, args: tuple, axes: tuple, groups: int):
    """`fn(*args)` for `fn` mapped over axis 0 of the arguments whose entry in `axes` is
    0 (`None`: shared), computed as `groups` independent slices of the batch and
    concatenated. The same values; XLA:CPU runs the independent slices' kernels side
    by side, where one batch-wide kernel after another kept the cores half busy."""
    batch = next(jax.tree.leaves(a)[0].shape[0] for a, axis in zip(args, axes) if axis == 0)
    if groups <= 1:
        return fn(*args)
    if batch % groups:
        raise ValueError(f"`groups` {groups} must divide the batch size {batch}.")
    size = batch // groups

    def part(g):
        return [
            a if axis is None else jax.tree.map(lambda v: v[g * size : (g + 1) * size], a)
            for a, axis in zip(args, axes)
        ]

    return jnp.concatenate([fn(*part(g)) for g in range(groups)])
