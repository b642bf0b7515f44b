"""Shared timing for the benchmarks: medians after a warm-up (and compilation)."""

import statistics
import time

import jax


def median_seconds(fn, *args, repeats: int) -> float:
    """Median wall time of `fn(*args)` over `repeats` runs, after one warm-up run;
    results are waited for with `jax.block_until_ready` (numpy results pass through)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)
