"""Training and sampling throughput of the cpu preset.

    python benchmarks/bench_train.py

1. Train-step throughput (img/s) of `spectral_diffusion.train.PRESETS["cpu"]`,
   measured on the jitted step after compilation.
2. End-to-end sampling at NFE 32 (`sd.ddim` on the trained-size network, batch 32,
   per-example spectral schedules) against a bare jitted `lax.scan` making the same
   32 network calls per example: the sampler's overhead ratio (target <= 1.10).
Everything in one run; medians of --repeats timings.
"""

import argparse
import os
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from _timing import median_seconds


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import spectral_diffusion as sd  # noqa: E402
from spectral_diffusion.train import (  # noqa: E402
    PRESETS,
    Recipe,
    data_source,
    init_state,
    make_train_step,
)


NFE = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = PRESETS["cpu"]
    source = data_source(config)
    state = init_state(config, source.num_classes)
    step = make_train_step(Recipe(config, source), source.num_classes)
    batch = config.data.batch_size
    images = jnp.asarray(source.images[:batch])
    labels = jnp.asarray(source.labels[:batch])
    key = jax.random.key(0)
    t_step = median_seconds(
        lambda: step(state, images, labels, key)[1]["loss"], repeats=args.repeats
    )

    denoiser = state.ema
    schedules = sd.spectral_schedule(sd.rapsd(images))
    z1 = jax.random.normal(key, images.shape)

    @jax.jit
    def sampler(schedules, z1, labels):
        def one(schedule, z, label):
            cond = sd.Conditioning.of(schedule, label)
            return sd.ddim(lambda z, lam, c: denoiser(z, lam, cond), schedule, z, NFE)

        return jax.vmap(one)(schedules, z1, labels)

    @jax.jit
    def bare(schedules, z1, labels):
        def one(schedule, z, label):
            cond = sd.Conditioning.of(schedule, label)
            lam = schedule.logsnr(1.0 - jnp.arange(NFE) / NFE)
            step = lambda z, lam_i: (0.5 * (z + denoiser(z, lam_i, cond)), None)  # noqa: E731
            return jax.lax.scan(step, z, lam)[0]

        return jax.vmap(one)(schedules, z1, labels)

    t_sampler = median_seconds(lambda: sampler(schedules, z1, labels), repeats=args.repeats)
    t_bare = median_seconds(lambda: bare(schedules, z1, labels), repeats=args.repeats)
    print(f"# bench_train — {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}\n")
    print("| measurement | value |")
    print("|---|---|")
    train_rate, sample_rate = batch / t_step, batch / t_sampler
    print(
        f"| cpu preset train step (batch {batch}, 32 px) | {t_step * 1e3:.0f} ms "
        f"= {train_rate:.0f} img/s |"
    )
    print(
        f"| sampling, sd.ddim NFE {NFE} (batch {batch}) | {t_sampler * 1e3:.0f} ms "
        f"= {sample_rate:.1f} img/s |"
    )
    print(f"| bare lax.scan, {NFE} network calls (batch {batch}) | {t_bare * 1e3:.0f} ms |")
    print(f"| sampler overhead ratio | {t_sampler / t_bare:.3f} |")


if __name__ == "__main__":
    main()
