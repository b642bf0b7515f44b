"""Train-step time of the cpu preset's recipe against batch size and resolution.

    python benchmarks/bench_scaling.py [--out docs/assets/scaling.png]

The cpu preset (same U-ViT widths, loss and per-example spectral schedules) at 32, 64
and 128 px and batch sizes 8 to 256, each jitted, median of --repeats steps after
compilation. Sizes above --max-pixels pixels per batch (default 128 x 128 x 32) are
skipped: at 128 px the transformer sees 32 x 32 = 1024 tokens, and batch 64 there ran
out of a 24 GiB machine's memory (the attention activations kept for the backward
pass). Each size is added to the JSON next to the plot as soon as it is measured; a
rerun skips the sizes already there (interrupt and resume freely). Prints a table (ms
per step, ms per image, µs per pixel) and writes a plot so users can size presets.
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from _timing import median_seconds


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spectral_diffusion._io import atomic_write_text  # noqa: E402
from spectral_diffusion.train import (  # noqa: E402
    PRESETS,
    Recipe,
    data_source,
    init_state,
    keep_host_memory,
    make_train_step,
)


BATCHES = (8, 16, 32, 64, 128, 256)
RESOLUTIONS = (32, 64, 128)


def step_seconds(resolution: int, batch: int, repeats: int) -> float:
    base = PRESETS["cpu"]
    config = dataclasses.replace(
        base,
        data=dataclasses.replace(
            base.data, image_size=resolution, batch_size=batch, patches_per_image=32
        ),
    )
    source = data_source(config)
    index = [i % len(source) for i in range(batch)]
    images = jnp.asarray(source.images[index])
    labels = jnp.asarray(source.labels[index])
    state = init_state(config, source.num_classes)
    step = make_train_step(Recipe(config, source), source.num_classes)
    key = jax.random.key(0)
    return median_seconds(lambda: step(state, images, labels, key)[1]["loss"], repeats=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-pixels", type=int, default=128 * 128 * 32)
    parser.add_argument("--out", type=Path, default=Path("scaling.png"))
    args = parser.parse_args()
    keep_host_memory()  # as train() does on CPU, before any computation
    results = args.out.with_suffix(".json")
    rows = json.loads(results.read_text()) if results.is_file() else []
    done = {(row["resolution"], row["batch"]) for row in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for resolution in RESOLUTIONS:
        for batch in BATCHES:
            if batch * resolution**2 > args.max_pixels or (resolution, batch) in done:
                continue
            seconds = step_seconds(resolution, batch, args.repeats)
            rows.append(dict(resolution=resolution, batch=batch, seconds=seconds))
            atomic_write_text(results, json.dumps(rows, indent=1))
            print(f"{resolution:4d} px, batch {batch:4d}: {seconds * 1e3:9.1f} ms", flush=True)
    print(f"\n# bench_scaling — {os.cpu_count()} cores, jax {jax.__version__}\n")
    print("| resolution | batch | ms per step | ms per image | µs per pixel |")
    print("|---|---|---|---|---|")
    for row in rows:
        per_image = row["seconds"] / row["batch"]
        print(
            f"| {row['resolution']} | {row['batch']} | {row['seconds'] * 1e3:.0f} | "
            f"{per_image * 1e3:.2f} | {per_image / row['resolution'] ** 2 * 1e6:.2f} |"
        )
    _plot(rows, args.out)
    print(f"\nwrote {args.out} and {results}")


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for resolution in RESOLUTIONS:
        mine = [r for r in rows if r["resolution"] == resolution]
        if not mine:
            continue
        batches = [r["batch"] for r in mine]
        left.plot(batches, [r["seconds"] for r in mine], "o-", label=f"{resolution} px")
        right.plot(
            batches,
            [r["seconds"] / r["batch"] / resolution**2 * 1e6 for r in mine],
            "o-",
            label=f"{resolution} px",
        )
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size")
        axis.legend()
        axis.grid(alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("seconds per train step")
    right.set_ylabel("µs per pixel (flat = cost grows with the pixels)")
    fig.suptitle("cpu preset recipe: train-step time on CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
