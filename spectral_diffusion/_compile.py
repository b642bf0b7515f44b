"""Compiler options for the programs the library jits itself (the train step, the
Reproduce suite's sampler), chosen from profiles of the cpu preset (Benchmarks page)."""

import functools
import os

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
