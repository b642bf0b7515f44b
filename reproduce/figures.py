"""Figures of the training data and of table1's models.

    python -m reproduce.figures [--preset cpu|gpu|paper|smoke] [--out out/reproduce]

- `figures_rapsd.png`: the training set's RAPSD, mean per class, with the 8-bit floor;
- `figures_bounds.png`: histograms of the per-image bounds λ_min, λ_max, with the
  baseline schedule's end points;
- `figures_schedules.png`: per-image (true) spectral schedules, schedules drawn from
  the class-conditional mixture, and the baseline's interpolated cosine;
- `figures_samples_nfe<K>.png`: held-out images and both methods' samples (the
  table1 seed-0 runs, trained here if table1 has not run) at each figure NFE.

Writes DIR/figures.json (bound statistics and the files) and DIR/figures.md.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import spectral_diffusion as sd

from ._cli import suite_main
from ._io import pyplot, save_figure
from ._reference import arrays
from ._runs import Runner, Variant, baseline_of


def plot_rapsd(power: np.ndarray, labels: np.ndarray, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    bins = np.arange(1, power.shape[1])
    for label in np.unique(labels):
        ax.loglog(bins, power[labels == label, 1:].mean(0), lw=0.9, alpha=0.8)
    ax.axhline(sd.quantization_noise_power(sd.BITS), color="k", ls=":", label="8-bit floor q")
    ax.set(xlabel="radial frequency bin", ylabel="RAPSD (mean per class, DC omitted)")
    ax.set_title(f"Training set: {len(power)} images, {len(np.unique(labels))} classes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)


def plot_bounds(low: np.ndarray, high: np.ndarray, baseline: sd.Schedule, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.2))
    ends = np.asarray(baseline.logsnr(jnp.array([1.0, 0.0])))
    for ax, values, end, name in zip(axes, (low, high), ends, ("λ_min", "λ_max")):
        ax.hist(values, bins=40, color="tab:blue", alpha=0.8)
        ax.axvline(
            end, color="tab:orange", ls="--", label=f"baseline λ({'1' if name == 'λ_min' else '0'})"
        )
        ax.set(xlabel=name, ylabel="images")
        ax.legend(fontsize=8)
    fig.suptitle("Per-image logSNR bounds of the training set")
    save_figure(fig, path)


def plot_schedules(true, sampled, baseline: sd.Schedule, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    t = np.linspace(0.0, 1.0, true.shape[1])
    for i, knots in enumerate(true):
        ax.plot(
            t,
            knots,
            color="tab:blue",
            lw=0.6,
            alpha=0.4,
            label="true (per image)" if i == 0 else None,
        )
    for i, knots in enumerate(sampled):
        ax.plot(
            t,
            knots,
            color="tab:green",
            lw=0.6,
            alpha=0.4,
            ls="--",
            label="mixture samples" if i == 0 else None,
        )
    fine = np.linspace(0.0, 1.0, 201)
    ax.plot(
        fine, np.asarray(baseline.logsnr(fine)), color="tab:orange", lw=2, label="SiD2 baseline"
    )
    ax.set(xlabel="t", ylabel="logSNR λ(t)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def tile(images: np.ndarray, columns: int) -> np.ndarray:
    """`(N, C, H, W)` images in [-1, 1] as one `(rows H, columns W, C)` picture in [0, 1]."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.ones((rows * h, columns * w, c))
    for i, image in enumerate(images):
        r, k = divmod(i, columns)
        canvas[r * h : (r + 1) * h, k * w : (k + 1) * w] = (image.transpose(1, 2, 0) + 1) / 2
    return np.clip(canvas, 0, 1)


def plot_samples(panels: dict[str, np.ndarray], nfe: int, path: Path) -> None:
    plt = pyplot()
    columns = int(np.ceil(np.sqrt(len(next(iter(panels.values()))))))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8))
    for ax, (name, images) in zip(axes, panels.items()):
        ax.imshow(tile(images, columns), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"DDIM, NFE {nfe} (same labels and initial noise in both panels)")
    save_figure(fig, path)


def body(runner: Runner, args) -> tuple[list[dict], str, dict]:
    suite, out = runner.suite, args.out
    config = suite.train
    reference = runner.reference(config)
    run = runner.trained(config)
    train_images, train_labels = arrays(reference.train_source, limit=4096)
    power = np.asarray(jax.jit(sd.rapsd)(jnp.asarray(train_images)))
    low, high = (
        np.asarray(b)
        for b in sd.logsnr_bounds(
            power, eps_hi=config.schedule.eps_hi, eps_lo=config.schedule.eps_lo
        )
    )
    baseline = runner.trained(baseline_of(config)).recipe.fixed_schedule
    files = ["figures_rapsd.png", "figures_bounds.png", "figures_schedules.png"]
    plot_rapsd(power, np.asarray(train_labels), out / files[0])
    plot_bounds(low, high, baseline, out / files[1])
    rng = np.random.default_rng(0)
    shown = rng.choice(len(power), min(60, len(power)), replace=False)
    true = run.true_knots(train_images[shown])
    sampled = np.asarray(run.mixture.sample(train_labels[shown], key=jax.random.key(0)).knots)
    plot_schedules(true, sampled, baseline, out / files[2])

    # A class-balanced grid: the same images, labels and noise as table1's evaluations.
    count = suite.grid_size
    shown = reference.subset(count)
    for nfe in suite.figure_nfes:
        panels = {"held-out images": reference.images[shown]}
        for name, variant in (
            ("SiD2 baseline", Variant("sid2_baseline", baseline_of(config))),
            ("spectral (mixture schedules)", Variant("spectral", config)),
        ):
            panels[name] = runner.generate(variant, nfe, len(shown))[0]
        files.append(f"figures_samples_nfe{nfe}.png")
        plot_samples(panels, nfe, out / files[-1])

    stats = {
        "logsnr_min": {
            "mean": float(low.mean()),
            "std": float(low.std()),
            "min": float(low.min()),
            "max": float(low.max()),
        },
        "logsnr_max": {
            "mean": float(high.mean()),
            "std": float(high.std()),
            "min": float(high.min()),
            "max": float(high.max()),
        },
        "baseline_ends": [float(v) for v in np.asarray(baseline.logsnr(jnp.array([1.0, 0.0])))],
    }
    lines = [
        f"Training set: {len(power)} images at {config.data.image_size} px. Per-image bounds: "
        f"λ_min {stats['logsnr_min']['mean']:.2f} ± {stats['logsnr_min']['std']:.2f} "
        f"(range {stats['logsnr_min']['min']:.2f} to {stats['logsnr_min']['max']:.2f}), "
        f"λ_max {stats['logsnr_max']['mean']:.2f} ± {stats['logsnr_max']['std']:.2f} "
        f"(range {stats['logsnr_max']['min']:.2f} to {stats['logsnr_max']['max']:.2f}); "
        f"the baseline spans λ(1) = {stats['baseline_ends'][0]:.2f} to "
        f"λ(0) = {stats['baseline_ends'][1]:.2f}.",
        "",
        *(f"![{name}]({name})" for name in files),
        "",
    ]
    return [], "\n".join(lines), {"bounds": stats, "files": files}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    return suite_main("figures", __doc__, argv, body)


if __name__ == "__main__":
    main()
