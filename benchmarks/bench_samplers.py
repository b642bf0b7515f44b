"""Per-step overhead of the samplers vs a bare `lax.scan` of the same denoiser calls.

    python benchmarks/bench_samplers.py

A tiny denoiser (one 3x3 convolution on 3 x 32 x 32, batch 64 via vmap) makes the
samplers' own bookkeeping visible. Baseline: `lax.scan` calling that denoiser N
times with the cheapest possible update. Same N, same batch, one run, median of
--repeats timings after compilation. Prints a markdown table with the ratios.
"""

import argparse
import os
import platform

import diffrax
import jax
import jax.numpy as jnp
from _timing import median_seconds

import spectral_diffusion as sd


BATCH, SHAPE, STEPS = 64, (3, 32, 32), 32


def tiny_denoiser(key):
    kernel = 0.1 * jax.random.normal(key, (3, 3, 3, 3))

    def denoise(z, lam, cond):
        out = jax.lax.conv_general_dilated(z[None], kernel, (1, 1), "SAME")[0]
        return jnp.tanh(out + 0.01 * lam)

    return denoise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    denoise = tiny_denoiser(jax.random.key(0))
    schedule = sd.Cosine()
    z1 = jax.random.normal(jax.random.key(1), (BATCH, *SHAPE))

    @jax.jit
    def bare(z1):
        lam = schedule.logsnr(1.0 - jnp.arange(STEPS) / STEPS)

        def one(z):
            def step(z, lam_i):
                return 0.5 * (z + denoise(z, lam_i, None)), None

            return jax.lax.scan(step, z, lam)[0]

        return jax.vmap(one)(z1)

    ddim = jax.jit(jax.vmap(lambda z: sd.ddim(denoise, schedule, z, STEPS)))
    euler = jax.jit(jax.vmap(lambda z: sd.ode(denoise, schedule, z, STEPS, solver=diffrax.Euler())))
    t_bare = median_seconds(bare, z1, repeats=args.repeats)
    t_ddim = median_seconds(ddim, z1, repeats=args.repeats)
    t_euler = median_seconds(euler, z1, repeats=args.repeats)
    print(
        f"# bench_samplers — {platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, diffrax {diffrax.__version__}\n"
    )
    print(f"batch {BATCH} x {SHAPE}, {STEPS} denoiser calls per sample\n")
    print("| loop | time | per step | ratio to bare scan |")
    print("|---|---|---|---|")
    for name, t in (("bare lax.scan", t_bare), ("sd.ddim", t_ddim), ("sd.ode(Euler)", t_euler)):
        print(f"| {name} | {t * 1e3:.2f} ms | {t / STEPS * 1e6:.0f} µs | {t / t_bare:.3f} |")


if __name__ == "__main__":
    main()
