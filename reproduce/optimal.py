"""The limit: oracle-optimal schedules, and how close every heuristic gets to them.

    python -m reproduce.optimal [--preset cpu|smoke] [--out out/optimal]

For each built-in photograph at each size, taken as a Gaussian with its own power
spectrum (`GaussianSpectral.from_image`), `sd.optimal_schedule` finds the schedule
with the least exact sampling error at each NFE, sampler and metric. Beside it: the
optimum for the data set's mean spectrum (one schedule for every image, as a
practitioner could use), every spectral kind, EDM, cosine, shifted and interpolated
cosine. Each heuristic's share of the achievable reduction is
`(err(cosine) - err(h)) / (err(cosine) - err(per-image optimum))`: 0 is no better
than cosine, 1 is as good as the optimum. The optimum's end points are compared with
each image's tight bounds. Writes DIR/optimal.json, DIR/optimal.md,
DIR/optimal_schedules.png and DIR/optimal_share.png.
"""

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import spectral_diffusion as sd
from spectral_diffusion.data import builtin_images

from ._io import (
    argument_parser,
    atomic_write_json,
    atomic_write_text,
    pyplot,
    run_metadata,
    save_figure,
)
from .configs.oracle import OPTIMAL_PRESETS, OptimalConfig
from .oracle import SCHEDULES, _closed_form, find_record, schedules_at


#: The two optima, then the heuristics of the oracle benchmark.
OPTIMA = ("optimal_per_image", "optimal_mean_spectrum")
ROWS = (*OPTIMA, *SCHEDULES)


def _errors(oracles, knots, sampler: str, nfe: int) -> dict[str, np.ndarray]:
    """Per-image exact `{"w2", "kl"}` of sampling along `knots` `(n, K + 1)`."""
    grid = sd.PiecewiseLinear.on_grid(sd.PiecewiseLinear(knots), nfe).knots
    errors, _ = _closed_form(oracles, grid, sampler, nfe)
    return {k: np.asarray(v, np.float64) for k, v in errors.items()}


def records_at(config: OptimalConfig, size: int, images, progress) -> tuple[list, dict]:
    """Errors of every row at `size`, and the per-image optima's knots and end points."""
    n = len(images)
    oracles = jax.vmap(sd.GaussianSpectral.from_image)(jnp.asarray(images))
    mean_variances = jnp.mean(oracles.variances, axis=0, keepdims=True)
    together = sd.GaussianSpectral(jnp.concatenate([oracles.variances, mean_variances]))
    power = sd.rapsd(images)
    logsnr_min, logsnr_max = (np.asarray(b) for b in sd.logsnr_bounds(power))
    heuristics = schedules_at(config, size, power)
    records, shapes = [], {}
    for sampler in config.samplers:
        for metric in config.metrics:
            for nfe in config.nfes:
                options = dict(sampler=sampler, metric=metric, steps=config.steps)
                # One call for the images and the mean spectrum: one compilation.
                both = sd.optimal_schedule(together, nfe, **options)
                per_image = sd.PiecewiseLinear(both.knots[:n])
                mean = sd.PiecewiseLinear(both.knots[n])
                knots = {
                    "optimal_per_image": per_image.knots,
                    "optimal_mean_spectrum": jnp.broadcast_to(mean.knots, (n, nfe + 1)),
                }
                for name, schedule in heuristics.items():
                    grid = sd.PiecewiseLinear.on_grid(schedule, nfe).knots
                    knots[name] = jnp.broadcast_to(grid, (n, nfe + 1))
                for name in ROWS:
                    errors = _errors(oracles, knots[name], sampler, nfe)
                    errors[metric] = sum(errors[part] for part in metric.split("+"))
                    records.append(
                        {
                            "resolution": size,
                            "sampler": sampler,
                            "metric": metric,
                            "nfe": nfe,
                            "schedule": name,
                            "error": float(errors[metric].mean()),
                            "per_image": errors[metric].tolist(),
                            # Both metrics, whichever was optimised.
                            "kl": float(errors["kl"].mean()),
                            "w2": float(errors["w2"].mean()),
                        }
                    )
                optimum = np.asarray(per_image.knots, np.float64)
                shapes[f"{sampler}/{metric}/{nfe}"] = {
                    "knots": optimum.tolist(),
                    "mean_spectrum_knots": np.asarray(mean.knots, np.float64).tolist(),
                    # End points against each image's tight bounds (nats).
                    "logsnr_0_minus_max": (optimum[:, 0] - logsnr_max).tolist(),
                    "logsnr_1_minus_min": (optimum[:, -1] - logsnr_min).tolist(),
                    # The first denoiser evaluation after the start, where the
                    # optimum begins to spend steps (lambda(1) itself barely matters).
                    "first_step_minus_min": (optimum[:, -2] - logsnr_min).tolist(),
                }
                progress.update(1)
    shapes["bounds"] = {"logsnr_min": logsnr_min.tolist(), "logsnr_max": logsnr_max.tolist()}
    shapes["spectral_mixed"] = np.asarray(
        sd.PiecewiseLinear.on_grid(heuristics["spectral_mixed"], 64).knots
    ).tolist()
    return records, shapes


def share(records: list[dict], name: str, **where) -> float:
    """`name`'s share of the achievable reduction over cosine (mean errors)."""

    def error(schedule):
        return find_record(records, schedule=schedule, **where)["error"]

    cosine, best = error("cosine"), error("optimal_per_image")
    if cosine - best <= 0:
        return float("nan")
    return (cosine - error(name)) / (cosine - best)


def _summary_axes(config: OptimalConfig) -> tuple[str, list[int], list[int]]:
    """The summary tables' sampler (the first), sizes (smallest and largest) and NFEs
    (fewest and most)."""
    sizes = sorted({config.resolutions[0], config.resolutions[-1]})
    return config.samplers[0], sizes, sorted({min(config.nfes), max(config.nfes)})


def summary(config: OptimalConfig, records: list[dict]) -> list[str]:
    """Every schedule's error as a multiple of the per-image optimum's, for the first
    sampler, at the smallest and the largest size and the fewest and most steps: how
    far each one is from the limit."""
    sampler, sizes, nfes = _summary_axes(config)
    columns = [(m, size, nfe) for m in config.metrics for size in sizes for nfe in nfes]

    def error(name, metric, size, nfe):
        where = dict(schedule=name, sampler=sampler, metric=metric, resolution=size, nfe=nfe)
        return find_record(records, **where)["error"]

    lines = [
        "",
        f"## Summary: error relative to the per-image optimum ({sampler})",
        "",
        "Each schedule's mean error divided by the per-image optimum's (1 = the limit). "
        "**Bold**: the best heuristic in each column.",
        "",
        "| schedule | " + " | ".join(f"{m.upper()} {s} px NFE {k}" for m, s, k in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    names = [n for n in ROWS if n != "optimal_per_image"]
    ratio = {(n, c): error(n, *c) / error("optimal_per_image", *c) for n in names for c in columns}
    best = {c: min(ratio[n, c] for n in names if n not in OPTIMA) for c in columns}
    for name in names:
        cells = [
            f"**{ratio[name, c]:.1f}×**"
            if name not in OPTIMA and ratio[name, c] == best[c]
            else f"{ratio[name, c]:.1f}×"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def cross_metric(config: OptimalConfig, records: list[dict]) -> list[str]:
    """Each metric's optimum measured by both metrics, beside the heuristics: what
    minimising one costs in the other."""
    if not {"kl", "w2"} <= set(config.metrics):
        return []
    sampler, sizes, nfes = _summary_axes(config)
    columns = [(size, nfe) for size in sizes for nfe in nfes]

    def row(schedule, metric, size, nfe):
        where = dict(schedule=schedule, sampler=sampler, metric=metric, resolution=size, nfe=nfe)
        return find_record(records, **where)

    lines = [
        "",
        f"## Each optimum measured by both metrics ({sampler})",
        "",
        "KL / W2 of the per-image optimum for KL, the one for W2, and three heuristics.",
        "",
        "| schedule | " + " | ".join(f"{s} px NFE {k}: KL / W2" for s, k in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    entries = [
        (f"optimal for {metric.upper()}", "optimal_per_image", metric) for metric in config.metrics
    ] + [
        ("spectral_mixed", "spectral_mixed", "kl"),
        ("spectral_power", "spectral_power", "kl"),
        ("edm", "edm", "kl"),
    ]
    for label, schedule, metric in entries:
        cells = []
        for size, nfe in columns:
            r = row(schedule, metric, size, nfe)
            cells.append(f"{r['kl']:.3g} / {r['w2']:.3g}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def markdown(
    config: OptimalConfig, records: list[dict], shapes: dict, seconds: float, command: str
) -> str:
    lines = [
        "# Oracle-optimal schedules: how close every heuristic gets",
        "",
        f"`{command}` ({seconds:.0f} s). Exact sampling error (mean over "
        "the built-in photographs at each size, each its own Gaussian) of the per-image "
        "optimum, the optimum for the mean spectrum, and every heuristic; in brackets "
        "each one's share of the achievable reduction over cosine, "
        "`(err(cosine) - err(h)) / (err(cosine) - err(optimum))` (1 = as good as the "
        "per-image optimum, 0 = no better than cosine, negative = worse). **Bold**: the "
        "best heuristic in each column.",
    ]
    lines += summary(config, records)
    lines += cross_metric(config, records)
    for sampler in config.samplers:
        for metric in config.metrics:
            columns = [(size, nfe) for size in config.resolutions for nfe in config.nfes]
            lines += [
                "",
                f"## {metric.upper()}, {sampler}",
                "",
                "| schedule | " + " | ".join(f"{s} px NFE {k}" for s, k in columns) + " |",
                "|---" * (len(columns) + 1) + "|",
            ]
            where = dict(sampler=sampler, metric=metric)
            table = {
                (r["schedule"], r["resolution"], r["nfe"]): r["error"]
                for r in records
                if r["sampler"] == sampler and r["metric"] == metric
            }
            best = {
                c: min(table[(name, *c)] for name in ROWS if name not in OPTIMA) for c in columns
            }
            for name in ROWS:
                cells = []
                for size, nfe in columns:
                    value = table[name, size, nfe]
                    cell = f"{value:.3g}"
                    if name != "optimal_per_image":
                        part = share(records, name, resolution=size, nfe=nfe, **where)
                        cell += f" ({part:.2f})"
                    if name not in OPTIMA and value == best[size, nfe]:
                        cell = f"**{cell}**"
                    cells.append(cell)
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Where the optimum puts its end points",
        "",
        "Mean over images (± standard deviation), in nats, of the per-image optimum's "
        "λ(0) minus the image's tight λ_max, and of the optimum's first step after the "
        "start, λ(t_1), minus the tight λ_min (λ(1) itself barely changes the error: "
        "the start is pure noise either way).",
        "",
        "| size | sampler | metric | NFE | λ(0) − λ_max | λ(t_1) − λ_min |",
        "|---|---|---|---|---|---|",
    ]
    for size in config.resolutions:
        for sampler in config.samplers:
            for metric in config.metrics:
                for nfe in config.nfes:
                    s = shapes[size][f"{sampler}/{metric}/{nfe}"]
                    top = np.asarray(s["logsnr_0_minus_max"])
                    first = np.asarray(s["first_step_minus_min"])
                    lines.append(
                        f"| {size} | {sampler} | {metric} | {nfe} | {top.mean():+.1f} ± "
                        f"{top.std():.1f} | {first.mean():+.1f} ± {first.std():.1f} |"
                    )
    return "\n".join(lines) + "\n"


def plot_schedules(config: OptimalConfig, shapes: dict, path: Path) -> None:
    """Optimal λ(t) per image (first sampler, last metric, the largest NFE) beside
    each image's spectral (mixed) schedule and cosine, one panel per resolution."""
    plt = pyplot()
    sizes = config.resolutions
    nfe = max(config.nfes)
    sampler, metric = config.samplers[0], config.metrics[-1]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.4 * len(sizes), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, size in zip(axes, sizes):
        s = shapes[size][f"{sampler}/{metric}/{nfe}"]
        optimum = np.asarray(s["knots"])
        spectral = np.asarray(shapes[size]["spectral_mixed"])
        t_opt = np.linspace(0, 1, optimum.shape[1])
        t_spec = np.linspace(0, 1, spectral.shape[-1])
        for i in range(optimum.shape[0]):
            ax.plot(
                t_opt,
                optimum[i],
                color="C3",
                lw=0.8,
                alpha=0.7,
                label="optimal" if i == 0 else None,
            )
            ax.plot(
                t_spec,
                spectral[i],
                color="C0",
                lw=0.8,
                ls="--",
                alpha=0.7,
                label="spectral (mixed)" if i == 0 else None,
            )
        ax.plot(
            t_opt,
            np.asarray(s["mean_spectrum_knots"]),
            color="k",
            lw=1.5,
            label="optimal, mean spectrum",
        )
        cosine = np.asarray(sd.PiecewiseLinear.on_grid(sd.Cosine(), 64).knots)
        ax.plot(np.linspace(0, 1, 65), cosine, color="grey", lw=1, ls=":", label="cosine")
        ax.set_title(f"{size} px ({optimum.shape[0]} images)", fontsize=9)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("λ(t)")
    axes[0].set_ylim(-20, 25)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"Oracle-optimal schedules ({sampler}, {metric.upper()}, NFE {nfe}) vs spectral")
    save_figure(fig, path, dpi=100)


def plot_share(config: OptimalConfig, records: list[dict], path: Path) -> None:
    """Each heuristic's share of the achievable reduction vs resolution, per NFE."""
    from matplotlib.ticker import NullFormatter

    plt = pyplot()
    sampler, metric = config.samplers[0], config.metrics[-1]
    fig, axes = plt.subplots(
        1, len(config.nfes), figsize=(4.2 * len(config.nfes), 3.4), sharey=True
    )
    axes = np.atleast_1d(axes)
    for ax, nfe in zip(axes, config.nfes):
        for i, name in enumerate(ROWS[1:]):
            values = [
                share(records, name, sampler=sampler, metric=metric, resolution=size, nfe=nfe)
                for size in config.resolutions
            ]
            style = "-o" if name.startswith(("spectral", "global", "optimal")) else "--o"
            ax.plot(config.resolutions, values, style, ms=3, color=f"C{i}", label=name)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(
            xscale="log", xlabel="resolution (px)", title=f"{sampler}, {metric.upper()}, NFE {nfe}"
        )
        ax.set_xticks(config.resolutions, [str(s) for s in config.resolutions])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-1.0, 1.1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of the achievable reduction")
    axes[-1].legend(fontsize=6)
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argument_parser("reproduce.optimal", __doc__)
    parser.add_argument("--preset", choices=sorted(OPTIMAL_PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("out/optimal"))
    args = parser.parse_args(argv)
    config = OPTIMAL_PRESETS[args.preset]

    start = time.perf_counter()
    records, shapes = [], {}
    total = len(config.resolutions) * len(config.samplers) * len(config.metrics) * len(config.nfes)
    with tqdm(total=total, desc="optimal schedules", unit="run") as progress:
        for size in config.resolutions:
            images, _ = builtin_images(size)
            found, shapes[size] = records_at(config, size, images, progress)
            records += found
    seconds = round(time.perf_counter() - start, 1)
    result = {
        "records": records,
        "shapes": {str(k): v for k, v in shapes.items()},
        "meta": {
            **run_metadata("reproduce.optimal", argv),
            "preset": args.preset,
            "config": config.__dict__,
            "seconds": seconds,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "optimal.json", result)
    command = result["meta"]["command"]
    atomic_write_text(args.out / "optimal.md", markdown(config, records, shapes, seconds, command))
    plot_schedules(config, shapes, args.out / "optimal_schedules.png")
    plot_share(config, records, args.out / "optimal_share.png")
    print(
        f"Wrote {args.out}/optimal.json, optimal.md, optimal_schedules.png, "
        f"optimal_share.png in {seconds} s"
    )
    return result


if __name__ == "__main__":
    main()
