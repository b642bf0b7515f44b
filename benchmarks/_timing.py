"""Shared timing for the benchmarks: medians after a warm-up (and compilation)."""

import statistics
import time

import jax


def median_seconds(fn, *args, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn(*args)` over `repeats` runs, after `warmup` runs;
    results are waited for with `jax.block_until_ready` (numpy and PyTorch results,
    computed eagerly, pass through)."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)
