"""python -m spectral_diffusion.train --config NAME --workdir DIR [--steps N]

NAME is a preset of reproduce/configs/train.py (run from the repository root) or a
path to a Python file defining `config = TrainConfig(...)`. Training resumes from
the latest checkpoint in DIR; Ctrl-C or SIGTERM saves a checkpoint and stops.
"""

import argparse
import importlib
import importlib.util
from pathlib import Path

from ._config import TrainConfig
from ._trainer import train


def load_config(name: str) -> TrainConfig:
    path = Path(name)
    if path.suffix == ".py":
        if not path.is_file():
            raise FileNotFoundError(f"No config file at {path}.")
        spec = importlib.util.spec_from_file_location("_train_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.config
    try:
        presets = importlib.import_module("reproduce.configs.train").PRESETS
    except ModuleNotFoundError as error:
        raise ValueError(
            f"Preset {name!r} needs reproduce/configs/train.py: run from the repository "
            "root, or pass a path to a config .py file."
        ) from error
    if name not in presets:
        raise ValueError(
            f"`--config` must be one of {sorted(presets)} or a .py file, got {name!r}."
        )
    return presets[name]


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
    state = train(load_config(args.config), args.workdir, steps=args.steps)
    print(f"Step {int(state.step)}; checkpoints in {args.workdir / 'checkpoints'}")


if __name__ == "__main__":
    main()
