"""python -m spectral_diffusion.train --config NAME --workdir DIR [--steps N]

NAME is a preset of `spectral_diffusion.train.PRESETS` (cpu, imagenet128,
imagenet256, imagenet512) or a path to a Python file defining
`config = TrainConfig(...)`. Training resumes from the latest checkpoint in DIR;
Ctrl-C or SIGTERM saves a checkpoint and stops.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

from ._config import TrainConfig
from ._presets import PRESETS
from ._trainer import TrainingDiverged, train


def load_config(name: str) -> TrainConfig:
    path = Path(name)
    if path.suffix == ".py":
        if not path.is_file():
            raise FileNotFoundError(f"No config file at {path}.")
        spec = importlib.util.spec_from_file_location("_train_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = getattr(module, "config", None)
        if not isinstance(config, TrainConfig):
            raise ValueError(
                f"{path} must define `config = TrainConfig(...)` at module level "
                f"(found {type(config).__name__ if config is not None else 'no `config`'})."
            )
        return config
    if name not in PRESETS:
        raise ValueError(
            f"`--config` must be one of {sorted(PRESETS)} or a .py file, got {name!r}."
        )
    return PRESETS[name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m spectral_diffusion.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=None, help="train until this step")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    try:
        config = load_config(args.config)
        state = train(config, args.workdir, steps=args.steps)
    except (TrainingDiverged, OSError, ValueError) as error:
        # One line the user can act on; the traceback adds nothing here.
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"Step {int(state.step)}; checkpoints in {args.workdir / 'checkpoints'}")


if __name__ == "__main__":
    main()
