"""Table 1: class-conditional sample quality vs NFE, SiD2 baseline vs spectral schedules.

    python -m reproduce.table1 [--preset cpu|gpu|paper|smoke] [--out out/reproduce]
                               [--seeds N]

Every arm shares the data, the network (FiLM-conditioned on the schedule's end
points), the sigmoid-weighted loss and its bias, the optimiser, the training budget,
the seeds and the random numbers (initial noise, labels, drawn schedules):

- `sid2_baseline`: SiD2's interpolated cosine schedule, in training and sampling;
- `spectral`: the full method as the library ships it: each image's tight mixed
  (power + frequency) schedule, training noise levels from the baseline's density
  truncated to that image's range (`loss.proposal="truncated"`), sampling along
  schedules drawn from the class-conditional mixture;
- `spectral_schedule_proposal`: the same with t ~ U[0, 1] on each image's own
  schedule in training (the literal reading of the method);
- `baseline_on_spectral`: the baseline's model sampled along the spectral run's
  mixture schedules (the schedule at inference only);
- `spectral_true`: the `spectral` model sampled along each reference image's own
  schedule (an oracle: generation cannot know it);
- `spectral_optimal`: the `spectral` model sampled along the Gaussian-oracle-optimal
  DDIM schedule (least exact KL + W2, `sd.optimal_schedule`) of each generated class's mean
  training power spectrum, at the sampling NFE: does the oracle's optimum transfer to
  a trained model?
- `spectral_optimal_fixed_ends`: the same optimisation started from each class's mean
  schedule under the mixture and keeping its end points (`fix_ends=True`), so the
  denoiser's conditioning on λ(0), λ(1) stays inside what it was trained on.

Samples are DDIM, one per held-out reference image, scored by Fréchet distance in
the features of the data-set classifier (cpu; Inception on the paper preset), in
pixels and in log-RAPSD space. The claims' NFEs (32, and 64 for the baseline and the
spectral method) are scored on the whole reference set for every seed; every arm is
also swept over every NFE on the preset's reduced subset for its first
`reduced_seeds` seeds. Both claims are tested on per-seed paired differences with a
95% t-interval. Writes DIR/table1.json, DIR/table1.md and DIR/table1.png.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._cli import seeded, suite_main
from ._io import pyplot, save_figure
from ._runs import Runner, Variant, baseline_of
from .configs.suite import with_config


METRICS = {"fd": "classifier FD", "pixel_fd": "pixel FD", "spectral_fd": "spectral FD"}
#: The two methods of the modules that compare only those (resolution).
METHODS = ("sid2_baseline", "spectral")


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    #: Which of the claims' NFEs are scored on the whole reference set: "both" (32
    #: and 64), "claim" (32 only), "none".
    full: str
    #: The NFEs of its sweep on the reduced subset: "all" of the suite's, or
    #: "to_claim" (those up to the claim's NFE: 8, 16, 32 on the cpu preset).
    sweep: str = "all"


ARMS = (
    Arm("sid2_baseline", "SiD2 baseline", "both"),
    Arm("spectral", "spectral (library default: truncated proposal)", "both"),
    Arm("spectral_schedule_proposal", "spectral, t ~ U on own schedule in training", "claim"),
    Arm("baseline_on_spectral", "baseline model along spectral schedules", "claim"),
    Arm("spectral_true", "spectral, true schedules (oracle)", "none"),
    # The transfer arms (Optimal schedules page): NFE 8-32 only, to hold the budget.
    Arm("spectral_optimal", "spectral model along oracle-optimal schedules", "claim", "to_claim"),
    Arm(
        "spectral_optimal_fixed_ends",
        "spectral model along oracle-optimal schedules, its own end points",
        "claim",
        "to_claim",
    ),
)
LABELS = {arm.name: arm.label for arm in ARMS}
#: The arms with a trained model of their own (the others reuse one).
TRAINED = ("sid2_baseline", "spectral", "spectral_schedule_proposal")
#: The paper's thresholds: FD >= 15% lower at NFE 32; the baseline's NFE-64 FD
#: reached at half the steps.
REDUCTION_CLAIM = 0.15


def arm_variants(config) -> dict[str, Variant]:
    """Every arm of one training seed's spectral `config` (whose `loss.proposal` is the
    library default, "auto": truncated for spectral schedules; the ablations share
    this run as their full method)."""
    baseline = baseline_of(config)
    return {
        "sid2_baseline": Variant("sid2_baseline", baseline),
        "spectral": Variant("spectral", config),
        "spectral_schedule_proposal": Variant(
            "spectral_schedule_proposal", with_config(config, loss=dict(proposal="schedule"))
        ),
        "baseline_on_spectral": Variant(
            "baseline_on_spectral",
            baseline,
            schedules_from=config,
        ),
        "spectral_true": Variant("spectral_true", config, "true"),
        "spectral_optimal": Variant("spectral_optimal", config, "optimal"),
        "spectral_optimal_fixed_ends": Variant(
            "spectral_optimal_fixed_ends", config, "optimal_fixed_ends"
        ),
    }


def claim_nfes(nfes: tuple[int, ...]) -> tuple[int, int]:
    """(NFE where the 15% claim is tested, baseline NFE the half-steps claim matches)."""
    at = 32 if 32 in nfes else nfes[len(nfes) // 2]
    return at, 64 if 64 in nfes else max(nfes)


def sweep_nfes(arm: Arm, nfes: tuple[int, ...]) -> tuple[int, ...]:
    """The NFEs of `arm`'s sweep on the reduced subset."""
    if arm.sweep == "all":
        return nfes
    at, _ = claim_nfes(nfes)
    return tuple(k for k in nfes if k <= at)


def plan(suite) -> list[tuple[Variant, int, int | None]]:
    """(variant, NFE, N) of every evaluation (N None = the whole reference set): the
    claims' NFEs on the whole set for every seed (both of them for the baseline and
    the spectral method, NFE 32 for the diagnostic arms), and a sweep of every arm
    over every NFE on the reduced subset for the first `reduced_seeds` seeds."""
    at, target = claim_nfes(suite.nfes)
    reduced_seeds = suite.seeds if suite.reduced_seeds is None else suite.reduced_seeds
    out = []
    for config in seeded(suite.train, suite.seeds):
        variants = arm_variants(config)
        for arm in ARMS:
            full = {"both": tuple(dict.fromkeys((at, target))), "claim": (at,), "none": ()}[
                arm.full
            ]
            out += [(variants[arm.name], nfe, None) for nfe in full]
            if config.seed < reduced_seeds:
                sweep = [
                    (variants[arm.name], nfe, suite.reduced_n)
                    for nfe in sweep_nfes(arm, suite.nfes)
                    if suite.reduced_n is not None or nfe not in full
                ]
                out += sweep
    return out


def interval(values: list[float], level: float = 0.95) -> dict:
    """Mean, standard deviation and the two-sided t-interval of the mean."""
    from scipy import stats

    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return {"mean": mean, "std": 0.0, "low": None, "high": None, "values": values.tolist()}
    std = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * std / np.sqrt(len(values)))
    return {
        "mean": mean,
        "std": std,
        "low": mean - half,
        "high": mean + half,
        "values": values.tolist(),
    }


def verdict(ci: dict, threshold: float) -> str:
    """'holds' when the whole interval clears the threshold, 'does not hold' when it
    lies entirely below, 'inconclusive' otherwise (or with one seed)."""
    if ci["low"] is None:
        return "inconclusive (one seed)"
    if ci["low"] >= threshold:
        return "holds"
    if ci["high"] < threshold:
        return "does not hold"
    return "inconclusive"


def _full(records: list[dict], variant: str, nfe: int, metric: str) -> dict[int, float]:
    """Per-seed values of whole-reference-set evaluations."""
    n = max(r["n"] for r in records)
    return {
        r["seed"]: r[metric]
        for r in records
        if r["variant"] == variant and r["nfe"] == nfe and r["n"] == n
    }


def _sweep(records: list[dict]) -> list[dict]:
    """The NFE sweep's records: the smallest N evaluated."""
    n = min(r["n"] for r in records)
    return [r for r in records if r["n"] == n]


def claims(records: list[dict], nfes: tuple[int, ...]) -> dict:
    """The paper's two claims on per-seed paired differences (whole reference set):

    - FD reduction at NFE 32, $1 - FD_{spectral} / FD_{baseline}$, against 15%;
    - half the steps: $1 - FD_{spectral}(32) / FD_{baseline}(64)$, against 0 (the
      spectral method at NFE 32 at least as good as the baseline at 64).

    The same paired reductions are reported for every other arm against the baseline
    at NFE 32, for context."""
    at, target = claim_nfes(nfes)
    result = {"nfe": at, "baseline_nfe": target}
    for metric in ("fd", "pixel_fd", "spectral_fd"):
        base = _full(records, "sid2_baseline", at, metric)
        base_target = _full(records, "sid2_baseline", target, metric)
        spectral = _full(records, "spectral", at, metric)
        seeds = sorted(set(base) & set(spectral) & set(base_target))
        entry = {}
        reduction = interval([1 - spectral[s] / base[s] for s in seeds])
        entry["reduction"] = {**reduction, "verdict": verdict(reduction, REDUCTION_CLAIM)}
        half = interval([1 - spectral[s] / base_target[s] for s in seeds])
        entry["half_steps"] = {**half, "verdict": verdict(half, 0.0)}
        entry["baseline_at_target"] = float(np.mean([base_target[s] for s in seeds]))
        entry["arms_vs_baseline"] = {}
        for arm in ARMS:
            other = _full(records, arm.name, at, metric)
            paired = sorted(set(other) & set(base))
            if arm.name != "sid2_baseline" and paired:
                entry["arms_vs_baseline"][arm.name] = interval(
                    [1 - other[s] / base[s] for s in paired]
                )
        # The transfer question: the same spectral model along the oracle's optimum
        # instead of its own mixture schedules.
        entry["optimal_vs_spectral"] = {}
        for name in ("spectral_optimal", "spectral_optimal_fixed_ends"):
            optimal = _full(records, name, at, metric)
            paired = sorted(set(optimal) & set(spectral))
            if paired:
                entry["optimal_vs_spectral"][name] = interval(
                    [1 - optimal[s] / spectral[s] for s in paired]
                )
        result[metric] = entry
    return result


def _cell(records, metric, variant, nfe) -> str:
    values = [r[metric] for r in records if r["variant"] == variant and r["nfe"] == nfe]
    if not values:
        return "–"
    text = f"{np.mean(values):.4g}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1):.2g}"
    return text


def _percent(ci: dict) -> str:
    text = f"{100 * ci['mean']:.1f}%"
    if ci["low"] is not None:
        text += f" (95% CI {100 * ci['low']:.1f}% to {100 * ci['high']:.1f}%)"
    return text


def _floor_row(reference, n: int, cells: list[str]) -> str:
    """The floor's table row: real training images scored against the reference at N =
    `n`; `cells` are metric names (a cell each) or "" (left empty)."""
    mean, spread = reference.floor_at(n)
    values = [f" {mean[m]:.4g} ± {spread[m]:.2g}" if m else "" for m in cells]
    return f"| real training images, N = {n} (floor) |" + "".join(f"{v} |" for v in values)


def markdown(runner: Runner, records: list[dict], claim: dict) -> str:
    suite = runner.suite
    reference = runner.reference(suite.train)
    full_n = len(reference)
    at, target = claim["nfe"], claim["baseline_nfe"]
    full = [r for r in records if r["n"] == full_n]
    seeds = sorted({r["seed"] for r in full})
    lines = [
        f"Held-out reference: {full_n} images ({suite.features} features); one sample per "
        "reference image, with the same labels, initial noise and drawn schedules for "
        "every arm. Floors score sets of real training images of the same size against "
        "the reference (mean ± standard deviation over disjoint sets): FD's own noise at "
        "that N.",
        "",
        f"### The claims' NFEs: N = {full_n}, {len(seeds)} seeds",
        "",
        "Mean ± standard deviation over training seeds.",
        "",
    ]
    columns = [(m, nfe) for m in METRICS for nfe in dict.fromkeys((at, target))]
    lines += [
        "| arm | " + " | ".join(f"{METRICS[m]}, NFE {nfe}" for m, nfe in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for arm in ARMS:
        if any(r["variant"] == arm.name for r in full):
            cells = [_cell(full, m, arm.name, nfe) for m, nfe in columns]
            lines.append(f"| {arm.label} | " + " | ".join(cells) + " |")
    lines += [_floor_row(reference, full_n, [m for m, _ in columns]), ""]

    sweep = _sweep(records)
    sweep_n = sweep[0]["n"]
    sweep_seeds = sorted({r["seed"] for r in sweep})
    if sweep_n != full_n or len(sweep_seeds) != len(seeds) or len(suite.nfes) > 2:
        which = ", ".join(f"seed {s}" for s in sweep_seeds)
        lines += [
            f"### Every NFE: N = {sweep_n}, {which}",
            "",
            f"A class-balanced subset of {sweep_n} reference images (FD is biased upwards "
            "at small N: compare these cells with each other and with this floor only).",
            "",
        ]
        for metric, title in METRICS.items():
            lines += [
                f"**{title}**",
                "",
                "| arm | " + " | ".join(f"NFE {k}" for k in suite.nfes) + " |",
                "|---|" + "---|" * len(suite.nfes),
            ]
            for arm in ARMS:
                cells = [_cell(sweep, metric, arm.name, nfe) for nfe in suite.nfes]
                lines.append(f"| {arm.label} | " + " | ".join(cells) + " |")
            empty = [""] * (len(suite.nfes) - 1)
            lines += [_floor_row(reference, sweep_n, [metric, *empty]), ""]
    lines += [
        "### Claims under test",
        "",
        f"Per-seed paired comparisons on the whole reference set ({full_n} images), "
        f"{len(seeds)} seeds, 95% t-intervals of the mean. A claim holds when its whole "
        "interval clears the threshold and does not hold when it lies entirely below.",
        "",
    ]
    for metric in ("fd", "pixel_fd"):
        c = claim[metric]
        red, half = c["reduction"], c["half_steps"]
        per_seed = ", ".join(f"{100 * v:.1f}%" for v in red["values"])
        lines.append(
            f"- **{METRICS[metric]}, ≥ {100 * REDUCTION_CLAIM:.0f}% lower at NFE {at}:** "
            f"the spectral method's FD is {_percent(red)} lower than the baseline's "
            f"(per seed: {per_seed}). **{red['verdict'].capitalize()}.**"
        )
        per_seed = ", ".join(f"{100 * v:.1f}%" for v in half["values"])
        lines.append(
            f"- **{METRICS[metric]}, the baseline's NFE-{target} quality at half the "
            f"steps:** the spectral method at NFE {at} is {_percent(half)} below the "
            f"baseline at NFE {target} ({c['baseline_at_target']:.4g}; per seed: "
            f"{per_seed}; above 0 means at least as good). **{half['verdict'].capitalize()}.**"
        )
    for metric in ("fd", "pixel_fd"):
        for name, ci in claim[metric]["optimal_vs_spectral"].items():
            lines.append(
                f"- **{METRICS[metric]}, does the oracle's optimum transfer?** "
                f"{LABELS[name].capitalize()}: {_percent(ci)} lower FD at NFE {at} than "
                "the same model along its own mixture schedules (negative: worse)."
            )
    lines += [
        "",
        f"Every arm against the baseline at NFE {at} (FD reduction, per-seed paired; "
        "positive = lower FD than the baseline):",
        "",
        "| arm | " + " | ".join(METRICS.values()) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for arm in ARMS[1:]:
        if not any(arm.name in claim[m]["arms_vs_baseline"] for m in METRICS):
            continue  # scored on the reduced subset only
        cells = [
            _percent(claim[m]["arms_vs_baseline"][arm.name])
            if arm.name in claim[m]["arms_vs_baseline"]
            else "–"
            for m in METRICS
        ]
        lines.append(f"| {arm.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], nfes, claim: dict, floors: dict, path: Path) -> None:
    """The NFE sweep (classifier and pixel FD), the claims' NFEs on the whole reference
    set per seed, and the per-seed paired reductions with their intervals."""
    from matplotlib.ticker import NullFormatter

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17.0, 3.8))
    sweep = _sweep(records)
    sweep_n, full_n = sweep[0]["n"], max(r["n"] for r in records)
    colors = {arm.name: f"C{i}" for i, arm in enumerate(ARMS)}
    for ax, metric in zip(axes[:2], ("fd", "pixel_fd")):
        for arm in ARMS:
            xs = [k for k in nfes if any(r["variant"] == arm.name and r["nfe"] == k for r in sweep)]
            ys = [
                np.mean([r[metric] for r in sweep if r["variant"] == arm.name and r["nfe"] == k])
                for k in xs
            ]
            style = "--o" if arm.name == "sid2_baseline" else "-o"
            ax.plot(xs, ys, style, ms=4, color=colors[arm.name], label=arm.label)
        ax.axhline(floors[sweep_n][metric], color="grey", lw=0.8, ls=":", label="real images")
        ax.set(xscale="log", yscale="log", xlabel="NFE")
        ax.set_title(f"{METRICS[metric]}, N = {sweep_n}", fontsize=10)
        ax.set_xticks(nfes, [str(k) for k in nfes])
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].legend(fontsize=6)

    ax = axes[2]
    at, target = claim["nfe"], claim["baseline_nfe"]
    full = [r for r in records if r["n"] == full_n]
    slots = [(arm, nfe) for nfe in dict.fromkeys((at, target)) for arm in ARMS]
    slots = [
        (a, k) for a, k in slots if any(r["variant"] == a.name and r["nfe"] == k for r in full)
    ]
    for i, (arm, nfe) in enumerate(slots):
        values = [r["fd"] for r in full if r["variant"] == arm.name and r["nfe"] == nfe]
        ax.bar(i, np.mean(values), color=colors[arm.name], alpha=0.5)
        ax.plot(np.full(len(values), i), values, "k.", ms=5)
    ax.axhline(floors[full_n]["fd"], color="grey", lw=0.8, ls=":")
    ax.set_xticks(
        range(len(slots)),
        [f"{a.name.replace('_', ' ')}, {k}" for a, k in slots],
        rotation=35,
        ha="right",
        fontsize=6,
    )
    ax.set_title(f"classifier FD at NFE {at} and {target}, N = {full_n}", fontsize=10)

    ax = axes[3]
    names = [a for a in ARMS[1:] if a.name in claim["fd"]["arms_vs_baseline"]]
    for i, arm in enumerate(names):
        ci = claim["fd"]["arms_vs_baseline"][arm.name]
        ax.plot(
            np.full(len(ci["values"]), i),
            100 * np.asarray(ci["values"]),
            "o",
            ms=4,
            color=colors[arm.name],
        )
        if ci["low"] is not None:
            below, above = 100 * (ci["mean"] - ci["low"]), 100 * (ci["high"] - ci["mean"])
            ax.errorbar(i + 0.15, 100 * ci["mean"], yerr=[[below], [above]], fmt="k_", capsize=4)
    ax.axhline(100 * REDUCTION_CLAIM, color="tab:red", ls="--", lw=0.8, label="claim: 15%")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(
        range(len(names)),
        [a.name.replace("_", " ") for a in names],
        rotation=25,
        ha="right",
        fontsize=7,
    )
    ax.set_ylabel(f"classifier-FD reduction at NFE {at} (%)", fontsize=8)
    ax.set_title("vs the baseline, per seed, 95% CI", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def body(runner: Runner, args) -> tuple[list[dict], str, dict]:
    suite = runner.suite
    records = [runner.evaluate(variant, nfe, n) for variant, nfe, n in plan(suite)]
    reference = runner.reference(suite.train)
    claim = claims(records, suite.nfes)
    sizes = sorted({r["n"] for r in records}, reverse=True)
    floors = {n: reference.floor_at(n)[0] for n in sizes}
    plot(records, suite.nfes, claim, floors, args.out / "table1.png")
    extra = {
        "floor": reference.floor,
        "floor_spread": reference.floor_spread,
        "floors": {str(n): dict(zip(("mean", "std"), reference.floor_at(n))) for n in sizes},
        "claims": claim,
        "arms": {arm.name: arm.label for arm in ARMS},
    }
    return records, markdown(runner, records, claim), extra


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    return suite_main("table1", __doc__, argv, body)


if __name__ == "__main__":
    main()
