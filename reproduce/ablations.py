"""Ablations of the spectral method, each against the full method at one NFE.

    python -m reproduce.ablations [--preset cpu|gpu|paper|smoke] [--out out/reproduce] [--seeds N]

Groups (the full method, "mixed", appears in each and is trained once):

- schedule kind: power / frequency / mixed per-instance schedules;
- per-instance vs one global spectral schedule for the whole data set;
- tight vs loosened bounds: the tolerances eps_hi, eps_lo scaled x100 (eps_lo is
  capped at 0.5: it must stay below 1) and /100;
- schedules at generation: drawn from the class-conditional mixture, the true
  schedules of the reference images (an oracle), or each class's mean schedule;
- classifier-free guidance at every noise level vs only inside a logSNR interval
  (and no guidance);
- TDAS frequency-filtered noise off / on (filter estimated from the variant's own
  samples at this NFE against training images);
- training noise levels: the baseline's density truncated to each image's range
  (the library default) vs t ~ U[0, 1] on each image's own schedule.

`--seeds` sets the number of training seeds (default: the preset's ablation seeds).
Writes DIR/ablations.json, DIR/ablations.md and DIR/ablations.png.
"""

import dataclasses
import sys
from pathlib import Path

from spectral_diffusion import EPS_HI, EPS_LO

from ._cli import mean_pm, seeded, suite_main, summarise
from ._io import pyplot, save_figure
from ._runs import Runner, Variant, baseline_of
from .configs.suite import with_config
from .table1 import METRICS


def groups(runner: Runner, config) -> dict[str, list[Variant]]:
    """Every ablation group for one training seed's `config` (the full method)."""
    suite = runner.suite
    full = Variant("mixed (full method)", config)

    def spectral(name, **schedule):
        return Variant(name, with_config(config, schedule=schedule))

    guided = dict(guidance=suite.guidance_scale)
    return {
        "schedule kind": [
            spectral("power", spectral_kind="power"),
            spectral("frequency", spectral_kind="frequency"),
            full,
        ],
        "per-instance vs global": [
            full,
            spectral("global spectral", kind="global_spectral"),
            Variant("SiD2 baseline", baseline_of(config)),
        ],
        "bounds": [
            full,
            spectral("eps x100 (tighter)", eps_hi=100 * EPS_HI, eps_lo=min(100 * EPS_LO, 0.5)),
            spectral("eps /100 (looser)", eps_hi=EPS_HI / 100, eps_lo=EPS_LO / 100),
        ],
        "schedules at generation": [
            full,
            dataclasses.replace(full, name="true (oracle)", generation="true"),
            dataclasses.replace(full, name="class mean", generation="mean"),
        ],
        "guidance": [
            full,
            dataclasses.replace(full, name=f"w = {suite.guidance_scale} everywhere", **guided),
            dataclasses.replace(
                full,
                name=f"w = {suite.guidance_scale} in λ ∈ {suite.guidance_interval}",
                guidance_interval=suite.guidance_interval,
                **guided,
            ),
        ],
        "TDAS": [full, dataclasses.replace(full, name="TDAS on", tdas=True)],
        "training proposal": [
            full,
            Variant("t ~ U on own schedule", with_config(config, loss=dict(proposal="schedule"))),
        ],
    }


def body(runner: Runner, args) -> tuple[list[dict], str, dict]:
    suite = runner.suite
    seeds = suite.seeds if args.seeds is not None else suite.ablation_seeds
    nfe = suite.ablation_nfe
    records = []
    for config in seeded(suite.train, seeds):
        for group, variants in groups(runner, config).items():
            for variant in variants:
                records.append({"group": group, **runner.evaluate(variant, nfe)})
    floor = runner.floor(suite.train)
    lines = [
        f"DDIM, NFE {nfe}; {len(runner.reference(suite.train).labels)} reference images; "
        f"mean ± standard deviation over {seeds} training seed(s). Real training images "
        f"score " + ", ".join(f"{METRICS[m]} {floor[m]:.4g}" for m in METRICS) + ".",
        "",
    ]
    names = {
        g: list(dict.fromkeys(r["variant"] for r in records if r["group"] == g))
        for g in dict.fromkeys(r["group"] for r in records)
    }
    for group, variants in names.items():
        lines += [
            f"### {group}",
            "",
            "| variant | " + " | ".join(METRICS.values()) + " |",
            "|---|" + "---|" * len(METRICS),
        ]
        for name in variants:
            cells = [mean_pm(records, m, group=group, variant=name) for m in METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    plot(records, names, args.out / "ablations.png")
    return records, "\n".join(lines), {"floor": floor, "nfe": nfe}


def plot(records: list[dict], names: dict[str, list[str]], path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.6), sharey=True)
    for ax, (group, variants) in zip(axes, names.items()):
        stats = [summarise(records, "fd", group=group, variant=v) for v in variants]
        ax.bar(
            range(len(variants)),
            [s[0] for s in stats],
            yerr=[s[1] for s in stats],
            color=["C1" if v.startswith("mixed") else "C0" for v in variants],
            capsize=3,
        )
        ax.set_xticks(range(len(variants)), variants, rotation=35, ha="right", fontsize=7)
        ax.set_title(group, fontsize=9)
    axes[0].set_ylabel("classifier FD (lower is better)")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    return suite_main("ablations", __doc__, argv, body)


if __name__ == "__main__":
    main()
