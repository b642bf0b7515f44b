"""The shell of every table module: its command line, its result files, and the
statistics its tables print."""

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spectral_diffusion.train import TrainConfig

from ._io import argument_parser, atomic_write_json, atomic_write_text, run_metadata
from ._runs import Runner
from .configs.suite import PRESETS


def seeded(config: TrainConfig, seeds: int) -> list[TrainConfig]:
    return [dataclasses.replace(config, seed=s) for s in range(seeds)]


def summarise(records: list[dict], metric: str, **where) -> tuple[float, float, int]:
    """Mean, standard deviation (ddof 1, 0 for one value) and count of `metric` over the
    records matching `where`."""
    values = [r[metric] for r in records if all(r[k] == v for k, v in where.items())]
    if not values:
        raise KeyError(f"No records with {where}.")
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), spread, len(values)


def mean_pm(records: list[dict], metric: str, **where) -> str:
    mean, spread, count = summarise(records, metric, **where)
    return f"{mean:.4g} ± {spread:.2g}" if count > 1 else f"{mean:.4g}"


def suite_main(name: str, doc: str, argv: list[str], body: Callable) -> dict:
    """Parse `--preset/--out/--seeds/--fid-weights`, run `body(runner, args)` →
    `(records, markdown, extra)`, and write DIR/<name>.json (records, extra, metadata)
    and DIR/<name>.md."""
    parser = argument_parser(f"reproduce.{name}", doc)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("out/reproduce"))
    parser.add_argument("--seeds", type=int, default=None, help="override the preset's seeds")
    parser.add_argument(
        "--fid-weights",
        default=None,
        help="the Inception FID weights file (paper preset; see the Metrics page)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    suite = PRESETS[args.preset]
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        suite = dataclasses.replace(suite, seeds=args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(suite, args.out, progress=not args.no_progress, fid_weights=args.fid_weights)
    start = time.perf_counter()
    records, markdown, extra = body(runner, args)
    result = {
        "records": records,
        **extra,
        "meta": {
            **run_metadata(f"reproduce.{name}", argv),
            "preset": args.preset,
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    atomic_write_json(args.out / f"{name}.json", result)
    atomic_write_text(args.out / f"{name}.md", markdown)
    print(f"Wrote {args.out}/{name}.json and {name}.md in {result['meta']['seconds']} s")
    return result
