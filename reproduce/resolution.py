"""Resolution study: one set of hyperparameters at every image size.

    python -m reproduce.resolution [--preset cpu|gpu|paper|smoke] [--out out/reproduce] [--seeds N]

The base config (network, loss with its sigmoid bias, optimiser, steps) is reused
unchanged at each size, only the image size changes. The spectral method's schedules
follow each image's spectrum by construction; SiD2's interpolated cosine shifts with
resolution by design, but the loss bias (tuned per resolution in SiD2) stays at its
base value. If the spectral method needs no per-resolution tuning, its advantage
should not shrink as the size grows. cpu: 32 and 64 px patches; paper: ImageNet
128/256/512 with the 128 px hyperparameters. `--seeds` sets training seeds (default
1). Writes DIR/resolution.json, DIR/resolution.md and DIR/resolution.png.
"""

import sys
from pathlib import Path

from ._cli import mean_pm, seeded, suite_main, summarise
from ._io import pyplot, save_figure
from ._runs import Runner, Variant, baseline_of
from .configs.suite import with_config
from .table1 import METHODS, METRICS


def configs(suite, seeds: int):
    """(size, training config) of every run: the base config at each size."""
    steps = suite.resolution_steps or suite.train.steps
    for size in suite.resolutions:
        base = with_config(suite.train, data=dict(image_size=size), steps=steps)
        for config in seeded(base, seeds):
            yield size, config


def body(runner: Runner, args) -> tuple[list[dict], str, dict]:
    suite = runner.suite
    records, floors = [], {}
    for size, config in configs(suite, args.seeds or 1):
        for variant in (Variant("sid2_baseline", baseline_of(config)), Variant("spectral", config)):
            records += [
                runner.evaluate(variant, nfe, suite.reduced_n) for nfe in suite.resolution_nfes
            ]
        floors[size] = runner.floor(config, suite.reduced_n)
    lines = [
        "Same hyperparameters at every size "
        f"({suite.resolution_steps or suite.train.steps} training steps); DDIM; "
        f"{records[0]['n']} reference images per size. "
        "Ratio = spectral / baseline (below 1: the spectral method is better).",
        "",
    ]
    for metric, title in METRICS.items():
        lines += [
            f"### {title}",
            "",
            "| size | NFE | sid2_baseline | spectral | ratio | real images |",
            "|---|---|---|---|---|---|",
        ]
        for size in suite.resolutions:
            for nfe in suite.resolution_nfes:
                where = dict(resolution=size, nfe=nfe)
                ratio = (
                    summarise(records, metric, variant="spectral", **where)[0]
                    / summarise(records, metric, variant="sid2_baseline", **where)[0]
                )
                cells = [mean_pm(records, metric, variant=m, **where) for m in METHODS]
                lines.append(
                    f"| {size} | {nfe} | {cells[0]} | {cells[1]} | {ratio:.3f} "
                    f"| {floors[size][metric]:.4g} |"
                )
        lines.append("")
    plot(records, suite, args.out / "resolution.png")
    floor = {str(size): value for size, value in floors.items()}
    return records, "\n".join(lines), {"floor": floor}


def plot(records: list[dict], suite, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.0 * len(METRICS), 3.3))
    for ax, (metric, title) in zip(axes, METRICS.items()):
        for nfe, marker in zip(suite.resolution_nfes, "os^v"):
            ratios = [
                summarise(records, metric, variant="spectral", resolution=s, nfe=nfe)[0]
                / summarise(records, metric, variant="sid2_baseline", resolution=s, nfe=nfe)[0]
                for s in suite.resolutions
            ]
            ax.plot(suite.resolutions, ratios, marker=marker, label=f"NFE {nfe}")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", xlabel="image size (px)", ylabel="spectral / baseline", title=title)
        ax.set_xticks(suite.resolutions, [str(s) for s in suite.resolutions])
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    return suite_main("resolution", __doc__, argv, body)


if __name__ == "__main__":
    main()
