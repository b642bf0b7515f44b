"""The Gaussian oracle benchmark: exact sampling error of every schedule vs NFE.

    python -m reproduce.oracle [--preset cpu|full|smoke] [--out out/oracle]

Each built-in photograph, at each size, is taken as a Gaussian with its own power
spectrum (plus the 8-bit floor). For that data the optimal denoiser is exact and the
per-frequency variance a sampler generates is closed-form, so the relative W2
(pixel-space Fréchet distance / total variance) and the KL per dimension measure
exactly what the schedule and the sampler cost at a given NFE. At the Monte Carlo
sizes the real samplers run too and their measured errors are reported beside the
closed form. Writes DIR/oracle.json, DIR/oracle.md and DIR/oracle_w2.png,
DIR/oracle_kl.png.
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
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
from .configs.oracle import PRESETS, OracleConfig


SCHEDULES = (
    "cosine",
    "shifted_cosine",
    "interpolated_cosine",
    "edm",
    "global_spectral",
    "spectral_power",
    "spectral_frequency",
    "spectral_mixed",
)


def schedules_at(config: OracleConfig, size: int, power) -> dict[str, sd.Schedule]:
    """Every schedule of the benchmark for images of `size` with RAPSDs `power`."""
    return {
        "cosine": sd.Cosine(),
        "shifted_cosine": sd.ShiftedCosine(size, base=config.shift_base),
        "interpolated_cosine": sd.InterpolatedCosine(size, low=config.interpolation_low),
        "edm": sd.EDM(),
        "global_spectral": sd.global_spectral_schedule(power),
        "spectral_power": sd.spectral_schedule(power, kind="power"),
        "spectral_frequency": sd.spectral_schedule(power, kind="frequency"),
        "spectral_mixed": sd.spectral_schedule(power, kind="mixed"),
    }


class OracleSampler(NamedTuple):
    """One sampler of the benchmark, both ways: `closed_form(oracle, schedule, nfe)`
    gives the per-frequency variance it generates and the NFE it spends; `run(oracle,
    schedule, nfe)` gives the real sampler `(z1, key) -> x0` at that NFE."""

    closed_form: Callable
    run: Callable


#: Every sampler of the benchmark by name (Heun spends two evaluations per step).
SAMPLERS = {
    "ddim": OracleSampler(
        lambda o, s, nfe: (o.ancestral_variance(s, nfe, eta=0.0), nfe),
        lambda o, s, nfe: lambda z, k: sd.ddim(o.denoise, s, z, nfe),
    ),
    "ddpm": OracleSampler(
        lambda o, s, nfe: (o.ancestral_variance(s, nfe, eta=1.0), nfe),
        lambda o, s, nfe: lambda z, k: sd.ddim(o.denoise, s, z, nfe, eta=1.0, key=k),
    ),
    "ode-heun": OracleSampler(
        lambda o, s, nfe: o.ode_variance(s, nfe // 2),
        lambda o, s, nfe: lambda z, k: sd.ode(o.denoise, s, z, nfe // 2),
    ),
    "sde-euler": OracleSampler(
        lambda o, s, nfe: (o.euler_maruyama_variance(s, nfe), nfe),
        lambda o, s, nfe: lambda z, k: sd.sde(o.denoise, s, z, nfe, key=k),
    ),
}


@eqx.filter_jit
def _closed_form(oracles, knots, sampler: str, num_steps: int):
    def one(oracle, knots):
        variance, nfe = SAMPLERS[sampler].closed_form(oracle, sd.PiecewiseLinear(knots), num_steps)
        return oracle.errors(variance), nfe

    return jax.vmap(one)(oracles, knots)


def closed_form_records(config: OracleConfig, size: int, images, progress) -> list[dict]:
    oracles = jax.vmap(sd.GaussianSpectral.from_image)(jnp.asarray(images))
    power = sd.rapsd(images)
    schedules = schedules_at(config, size, power)
    n = len(images)
    records = []
    for sampler in config.samplers:
        for nfe in config.nfes:
            # All schedules in one call: stack their grids and repeat the oracles.
            grids = [sd.PiecewiseLinear.on_grid(s, nfe).knots for s in schedules.values()]
            knots = jnp.concatenate([jnp.broadcast_to(g, (n, nfe + 1)) for g in grids])
            repeated = jax.tree.map(lambda a: jnp.concatenate([a] * len(schedules)), oracles)
            errors, used = _closed_form(repeated, knots, sampler, nfe)
            for i, name in enumerate(schedules):
                block = slice(i * n, (i + 1) * n)
                records.append(
                    {
                        "resolution": size,
                        "schedule": name,
                        "sampler": sampler,
                        "nfe": int(np.asarray(used)[block][0]),
                        "w2": float(jnp.mean(errors["w2"][block])),
                        "kl": float(jnp.mean(errors["kl"][block])),
                        "n_images": n,
                    }
                )
            progress.update(1)
    return records


def monte_carlo_records(config: OracleConfig, size: int, images, key) -> list[dict]:
    records = []
    schedules = schedules_at(config, size, sd.rapsd(images))
    for i, image in enumerate(images[: config.monte_carlo_images]):
        oracle = sd.GaussianSpectral.from_image(jnp.asarray(image))
        for name in ("cosine", "spectral_mixed"):
            schedule = schedules[name]
            if isinstance(schedule, sd.PiecewiseLinear) and schedule.knots.ndim == 2:
                schedule = sd.PiecewiseLinear(schedule.knots[i])  # this image's own schedule
            for sampler in config.samplers:
                nfe = config.monte_carlo_nfe
                run = eqx.filter_jit(oracle.monte_carlo)  # ints and callables are static
                mc = run(
                    SAMPLERS[sampler].run(oracle, schedule, nfe),
                    config.monte_carlo_samples,
                    key=jax.random.fold_in(key, i),
                )
                closed, _ = _closed_form(
                    jax.tree.map(lambda a: a[None], oracle),
                    sd.PiecewiseLinear.on_grid(schedule, nfe).knots[None],
                    sampler,
                    nfe,
                )
                records.append(
                    {
                        "resolution": size,
                        "image": i,
                        "schedule": name,
                        "sampler": sampler,
                        "nfe": nfe,
                        "samples": config.monte_carlo_samples,
                        "w2_monte_carlo": float(mc["w2"]),
                        "w2_closed_form": float(closed["w2"][0]),
                        "kl_monte_carlo": float(mc["kl"]),
                        "kl_closed_form": float(closed["kl"][0]),
                    }
                )
    return records


def find_record(records, **where) -> dict:
    """The first record whose fields equal `where`."""
    return next(r for r in records if all(r[k] == v for k, v in where.items()))


def summary(config: OracleConfig, records: list[dict]) -> list[str]:
    """One compact table per metric: schedules x (sampler, size, NFE) at the smallest,
    a middle and the largest size and two NFEs."""
    sizes = sorted(
        {
            config.resolutions[0],
            config.resolutions[len(config.resolutions) // 2],
            config.resolutions[-1],
        }
    )
    nfes = [n for n in (8, 32) if n in config.nfes] or list(config.nfes[:2])
    lines = []
    for metric in ("w2", "kl"):
        columns = [
            (sampler, size, nfe) for sampler in config.samplers for size in sizes for nfe in nfes
        ]
        table = {
            (name, column): find_record(
                records,
                sampler=column[0],
                resolution=column[1],
                schedule=name,
                nfe=_nfe(records, column),
            )[metric]
            for name in SCHEDULES
            for column in columns
        }
        best = {column: min(table[name, column] for name in SCHEDULES) for column in columns}
        lines += [
            "",
            f"### Summary: {metric.upper()}",
            "",
            "| schedule | "
            + " | ".join(f"{s} {px}px NFE {_nfe(records, (s, px, n))}" for s, px, n in columns)
            + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for name in SCHEDULES:
            cells = [
                f"**{table[name, c]:.3g}**"
                if table[name, c] == best[c]
                else f"{table[name, c]:.3g}"
                for c in columns
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _nfe(records, column) -> int:
    """The NFE actually used for a budget (Heun spends 2 per step: budget 8 -> 8)."""
    sampler, size, budget = column
    used = sorted(
        {r["nfe"] for r in records if r["sampler"] == sampler and r["resolution"] == size}
    )
    return min(used, key=lambda n: abs(n - budget))


def markdown(config: OracleConfig, records: list[dict], monte_carlo: list[dict]) -> str:
    lines = [
        "# Gaussian oracle: exact sampling error vs NFE",
        "",
        "Relative W2 (pixel-space Fréchet distance over total variance) and KL per "
        "dimension, mean over the built-in photographs at each size. Lower is better; "
        "**bold** is the best schedule in each column.",
        *summary(config, records),
        "",
        "## All results",
    ]
    for metric in ("w2", "kl"):
        for sampler in config.samplers:
            for size in config.resolutions:
                rows = [r for r in records if r["sampler"] == sampler and r["resolution"] == size]
                if not rows:
                    continue
                nfes = sorted({r["nfe"] for r in rows})
                best = {nfe: min(r[metric] for r in rows if r["nfe"] == nfe) for nfe in nfes}
                n_images = rows[0]["n_images"]
                lines += [
                    "",
                    f"### {metric.upper()}, {sampler}, {size} px ({n_images} images)",
                    "",
                    "| schedule | " + " | ".join(f"NFE {nfe}" for nfe in nfes) + " |",
                    "|---" * (len(nfes) + 1) + "|",
                ]
                for name in SCHEDULES:
                    cells = []
                    for nfe in nfes:
                        value = next(
                            r[metric] for r in rows if r["schedule"] == name and r["nfe"] == nfe
                        )
                        cell = f"{value:.3g}"
                        cells.append(f"**{cell}**" if value == best[nfe] else cell)
                    lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if monte_carlo:
        lines += [
            "",
            "## Real samplers (Monte Carlo) vs closed form",
            "",
            "| size | image | schedule | sampler | NFE | samples "
            "| W2 MC | W2 exact | KL MC | KL exact |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in monte_carlo:
            lines.append(
                f"| {r['resolution']} | {r['image']} | {r['schedule']} | {r['sampler']} "
                f"| {r['nfe']} | {r['samples']} | {r['w2_monte_carlo']:.4g} "
                f"| {r['w2_closed_form']:.4g} | {r['kl_monte_carlo']:.4g} "
                f"| {r['kl_closed_form']:.4g} |"
            )
    return "\n".join(lines) + "\n"


def plot(config: OracleConfig, records: list[dict], metric: str, path: Path) -> None:
    plt = pyplot()

    samplers, sizes = config.samplers, config.resolutions
    fig, axes = plt.subplots(
        len(samplers),
        len(sizes),
        figsize=(3.3 * len(sizes), 2.9 * len(samplers)),
        squeeze=False,
        sharex=True,
    )
    styles = {
        name: ("-" if name.startswith(("spectral", "global")) else "--") for name in SCHEDULES
    }
    colours = dict(zip(SCHEDULES, plt.get_cmap("tab10").colors))
    for row, sampler in enumerate(samplers):
        for col, size in enumerate(sizes):
            ax = axes[row, col]
            for name in SCHEDULES:
                rows = sorted(
                    (
                        r
                        for r in records
                        if r["sampler"] == sampler
                        and r["resolution"] == size
                        and r["schedule"] == name
                    ),
                    key=lambda r: r["nfe"],
                )
                ax.loglog(
                    [r["nfe"] for r in rows],
                    [max(r[metric], 1e-12) for r in rows],
                    styles[name],
                    color=colours[name],
                    marker="o",
                    ms=3,
                    label=name,
                )
            ax.set_title(f"{sampler}, {size} px", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            if row == len(samplers) - 1:
                ax.set_xlabel("NFE")
            if col == 0:
                ax.set_ylabel(f"{metric.upper()} (exact)")
    axes[0, -1].legend(fontsize=6)
    fig.suptitle(f"Gaussian oracle: {metric.upper()} vs NFE (solid: spectral schedules)")
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    parser = argument_parser("reproduce.oracle", __doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("out/oracle"))
    args = parser.parse_args(argv)
    config = PRESETS[args.preset]

    start = time.perf_counter()
    records, monte_carlo = [], []
    total = len(config.resolutions) * len(config.samplers) * len(config.nfes)
    with tqdm(total=total, desc="oracle (closed form)", unit="run") as progress:
        for size in config.resolutions:
            images, _ = builtin_images(size)
            records += closed_form_records(config, size, images, progress)
    for size in tqdm(config.monte_carlo_resolutions, desc="oracle (Monte Carlo)", unit="size"):
        images, _ = builtin_images(size)
        monte_carlo += monte_carlo_records(config, size, images, jax.random.key(size))
    result = {
        "records": records,
        "monte_carlo": monte_carlo,
        "meta": {
            **run_metadata("reproduce.oracle", argv),
            "preset": args.preset,
            "config": config.__dict__,
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "oracle.json", result)
    atomic_write_text(args.out / "oracle.md", markdown(config, records, monte_carlo))
    plot(config, records, "w2", args.out / "oracle_w2.png")
    plot(config, records, "kl", args.out / "oracle_kl.png")
    print(
        f"Wrote {args.out}/oracle.json, oracle.md, oracle_w2.png, oracle_kl.png "
        f"in {result['meta']['seconds']} s"
    )
    return result


if __name__ == "__main__":
    main()
