"""Per-logSNR diagnostics of table1's trained models, and how training spends its noise
levels.

    python -m reproduce.denoising [--preset cpu|gpu|paper|smoke] [--out out/reproduce]
                                  [--seeds N]

- Held-out x-MSE of every trained arm (`sid2_baseline`, `spectral`,
  `spectral_schedule_proposal`; every seed) on a common logSNR grid, each reference
  image conditioned as in training (label, its own schedule's end points), with one
  noise draw shared by all models; and J = ∫ sigmoid(λ) MSE dλ over the grid.
- The learning curve: J at every kept checkpoint (`keep_every`), which shows whether
  the training budget was enough.
- Training noise levels: for each arm, the share of training examples at each range
  of λ and the effective batch size (Kish, on the v-residual weights of the weighted
  loss) over the first batches of the training pipeline.

Shares table1's runs (training them if table1 has not). Writes DIR/denoising.json,
DIR/denoising.md and DIR/denoising.png.
"""

import sys
from pathlib import Path

import jax
import numpy as np

import spectral_diffusion as sd
from spectral_diffusion import data as data_lib
from spectral_diffusion.train import Recipe

from ._cli import seeded, suite_main
from ._io import pyplot, save_figure
from ._runs import Runner
from .table1 import LABELS, TRAINED, arm_variants


#: λ ranges of the statistics table.
RANGES = ((-np.inf, -6.0), (-6.0, 0.0), (0.0, 4.0), (4.0, np.inf))


def kept_steps(config) -> list[int]:
    """Steps of the checkpoints a run keeps for its learning curve (and the last)."""
    every = config.keep_every or config.steps
    return sorted({*range(every, config.steps + 1, every), config.steps})


def noise_statistics(runner: Runner, config) -> dict:
    """How one training config spends its noise levels over its first batches."""
    source = runner.reference(config).train_source
    recipe = Recipe(config, source)
    batches = data_lib.training_batches(
        source, config.data.batch_size, seed=config.seed, flip=False
    )
    count = runner.suite.statistics_batches

    @jax.jit
    def levels(images, key):
        schedule = recipe.schedule_for(images)
        return sd.noise_levels(recipe.proposal, schedule, config.data.batch_size, key=key)

    lam, sizes = [], []
    for step in range(count):
        images = batches[step]["image"]
        drawn = levels(images, jax.random.fold_in(jax.random.key(config.seed), step))
        weights = np.asarray(recipe.loss.weight(drawn) * jax.nn.sigmoid(drawn.logsnr))
        lam.append(np.asarray(drawn.logsnr))
        sizes.append(float(sd.effective_batch_size(weights)))
    lam = np.concatenate(lam)
    return {
        "batches": count,
        "batch_size": config.data.batch_size,
        "effective_batch_size": float(np.mean(sizes)),
        "shares": [float(np.mean((lam >= lo) & (lam < hi))) for lo, hi in RANGES],
    }


def body(runner: Runner, args) -> tuple[list[dict], str, dict]:
    suite = runner.suite
    records, statistics = [], {}
    for config in seeded(suite.train, suite.seeds):
        variants = arm_variants(config)
        for name in TRAINED:
            arm_config = variants[name].config
            final = runner.denoising(arm_config, n=suite.diagnostic_n)
            curve = []
            for step in kept_steps(arm_config):
                point = runner.denoising(arm_config, step, n=suite.curve_n)
                curve.append({"step": step, "J": point["J"], "n": point["n"]})
            records.append({"variant": name, "seed": config.seed, **final, "curve": curve})
            if config.seed == 0:
                statistics[name] = noise_statistics(runner, arm_config)
    plot(records, args.out / "denoising.png")
    return records, markdown(suite, records, statistics), {"noise_levels": statistics}


def _mean_mse(records, name) -> np.ndarray:
    return np.mean([r["mse"] for r in records if r["variant"] == name], axis=0)


def markdown(suite, records: list[dict], statistics: dict) -> str:
    logsnrs = records[0]["logsnr"]
    seeds = sorted({r["seed"] for r in records})
    base = _mean_mse(records, "sid2_baseline")
    show = [i for i, lam in enumerate(logsnrs) if float(lam).is_integer() and lam % 2 == 0]
    lines = [
        f"Held-out x-MSE of each trained model, {records[0]['n']} reference images, each "
        f"conditioned as in training, one shared noise draw; mean over {len(seeds)} "
        "seed(s). Rows after the baseline give the change relative to it (negative = "
        "lower error).",
        "",
        "| model | " + " | ".join(f"λ = {logsnrs[i]:g}" for i in show) + " |",
        "|---|" + "---|" * len(show),
        "| SiD2 baseline (x-MSE) | " + " | ".join(f"{base[i]:.3g}" for i in show) + " |",
    ]
    for name in TRAINED[1:]:
        mse = _mean_mse(records, name)
        cells = [f"{100 * (mse[i] / base[i] - 1):+.0f}%" for i in show]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"J = ∫ sigmoid(λ) MSE dλ over λ ∈ [{logsnrs[0]:g}, {logsnrs[-1]:g}] "
        "(lower is better), per seed and mean:",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for name in TRAINED:
        values = [r["J"] for r in sorted(records, key=lambda r: r["seed"]) if r["variant"] == name]
        cells = " | ".join(f"{v:.4f}" for v in values)
        lines.append(f"| {LABELS[name]} | {cells} | {np.mean(values):.4f} |")
    steps = [c["step"] for c in records[0]["curve"]]
    lines += [
        "",
        f"Learning curve: J at the kept checkpoints ({records[0]['curve'][0]['n']} images "
        "per point), mean over seeds:",
        "",
        "| model | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for name in TRAINED:
        curves = np.array(
            [[c["J"] for c in r["curve"]] for r in records if r["variant"] == name]
        ).mean(0)
        lines.append(f"| {LABELS[name]} | " + " | ".join(f"{v:.4f}" for v in curves) + " |")
    if statistics:
        any_stats = next(iter(statistics.values()))
        names = ["λ < -6", "-6 ≤ λ < 0", "0 ≤ λ < 4", "λ ≥ 4"]
        lines += [
            "",
            f"Training noise levels over the first {any_stats['batches']} batches of "
            f"{any_stats['batch_size']} (seed 0): share of examples per λ range and the "
            "effective batch size of the weighted loss (Kish, on the v-residual weights "
            "½ w(λ) sigmoid(λ) / p(λ); `sd.effective_batch_size`).",
            "",
            "| training | " + " | ".join(names) + " | effective batch |",
            "|---|" + "---|" * (len(names) + 1),
        ]
        for name, stats in statistics.items():
            shares = " | ".join(f"{100 * v:.0f}%" for v in stats["shares"])
            lines.append(
                f"| {LABELS[name]} | {shares} | {stats['effective_batch_size']:.1f} of "
                f"{stats['batch_size']} |"
            )
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    plt = pyplot()

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    logsnrs = np.asarray(records[0]["logsnr"])
    base = _mean_mse(records, "sid2_baseline")
    for name in TRAINED:
        ratios = np.array([np.asarray(r["mse"]) / base for r in records if r["variant"] == name])
        (line,) = left.plot(logsnrs, ratios.mean(0), "-o", ms=3, label=LABELS[name])
        if len(ratios) > 1:
            left.fill_between(
                logsnrs, ratios.min(0), ratios.max(0), color=line.get_color(), alpha=0.15
            )
        curves = [r["curve"] for r in records if r["variant"] == name]
        steps = [c["step"] for c in curves[0]]
        values = np.array([[c["J"] for c in curve] for curve in curves])
        right.plot(steps, values.mean(0), "-o", ms=3, color=line.get_color(), label=LABELS[name])
        if len(values) > 1:
            right.fill_between(
                steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.15
            )
    left.axhline(1.0, color="grey", lw=0.8)
    left.set(
        xlabel="λ (logSNR)",
        ylabel="held-out x-MSE / baseline's",
        title="Denoising error relative to the baseline",
    )
    left.legend(fontsize=7)
    right.set(
        xlabel="training step",
        ylabel="J = ∫ sigmoid(λ) MSE dλ",
        title="Learning curve (held-out J)",
    )
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    return suite_main("denoising", __doc__, argv, body)


if __name__ == "__main__":
    main()
