"""Checkpoints: the train state, saving it (orbax, atomic) and restoring it; the run's
schedule mixture beside them."""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from jaxtyping import Array, Int

from .._mixture import ScheduleMixture
from .._nets import Denoiser
from ._config import TrainConfig
from ._recipe import Recipe


class TrainState(eqx.Module):
    """What a checkpoint holds: the trained denoiser, its EMA, the optimiser state and
    the number of steps taken."""

    denoiser: Denoiser
    ema: Denoiser
    opt_state: optax.OptState
    step: Int[Array, ""]


def init_state(config: TrainConfig, num_classes: int) -> TrainState:
    """The state before the first step: a denoiser initialised from `config.seed`, its
    EMA equal to it, a fresh optimiser state."""
    recipe = Recipe(config)
    denoiser = recipe.denoiser(num_classes, key=jax.random.key(config.seed))
    opt_state = recipe.optimizer.init(eqx.filter(denoiser, eqx.is_array))
    return TrainState(denoiser, denoiser, opt_state, jnp.zeros((), jnp.int32))


#: Where a run keeps the schedule mixture that generation samples from.
MIXTURE_FILE = "schedule_mixture.npz"


def load_mixture(workdir: str | os.PathLike) -> ScheduleMixture:
    """The schedule mixture a per-example spectral run fitted to its training set.

    **Raises:**

    `FileNotFoundError` when `workdir` holds none (a run with a shared schedule).
    """
    path = Path(workdir) / MIXTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No schedule mixture in {workdir} (missing {MIXTURE_FILE}).")
    return ScheduleMixture.load(path)


def checkpoint_manager(workdir: Path, config: TrainConfig) -> ocp.CheckpointManager:
    # Orbax writes each checkpoint to a temporary directory and renames it when
    # complete: a crash never leaves a half-written checkpoint behind.
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, keep_period=config.keep_every, create=True
        ),
    )


#: Where damaged checkpoints are moved (inside the workdir), never deleted.
DAMAGED_DIR = "damaged_checkpoints"


def save_checkpoint(manager: ocp.CheckpointManager, state: TrainState) -> None:
    """Save `state` as the checkpoint of its step and wait until it is on disk.

    **Raises:**

    `OSError` naming the checkpoint folder and what failed (disk full, read-only
    folder, ...); orbax's temporary directory is removed and the previous checkpoints
    are left as they were.
    """
    step = int(state.step)
    arrays = {"leaves": jax.tree.leaves(eqx.filter(state, eqx.is_array))}
    try:
        manager.save(step, args=ocp.args.StandardSave(arrays), force=True)
        manager.wait_until_finished()
    except Exception as error:
        directory = Path(manager.directory)
        for tmp in directory.glob(f"{step}.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)
        cause = getattr(error, "strerror", None) or f"{type(error).__name__}: {error}"
        raise OSError(
            getattr(error, "errno", None),
            f"Cannot write the checkpoint of step {step} in {directory}: {cause}",
        ) from error


def restore_latest_intact(
    manager: ocp.CheckpointManager,
    template: TrainState,
    *,
    report: Callable[[str], None] = print,
) -> TrainState | None:
    """The newest checkpoint that restores, placed as `template` (`None` if none).

    Leftover temporary directories of interrupted saves are removed; a checkpoint
    that fails to restore (truncated or corrupt files, missing metadata) is moved to
    `workdir/damaged_checkpoints/` and the next older one is tried. Each is reported
    in one line through `report`.
    """
    directory = Path(manager.directory)
    for tmp in sorted(directory.glob("*.orbax-checkpoint-tmp*")):
        report(f"Removing {tmp}: an interrupted checkpoint write.")
        shutil.rmtree(tmp, ignore_errors=True)
    manager.reload()
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            return restore_into(manager, template, step)
        except Exception as error:  # orbax/tensorstore raise many kinds
            damaged = directory.parent / DAMAGED_DIR / str(step)
            damaged.parent.mkdir(exist_ok=True)
            if damaged.exists():
                shutil.rmtree(damaged)
            shutil.move(str(directory / str(step)), damaged)
            manager.reload()
            report(
                f"Checkpoint {directory / str(step)} is damaged "
                f"({type(error).__name__}); moved to {damaged}, trying the previous one."
            )
    return None


def restore_into(manager: ocp.CheckpointManager, template: TrainState, step: int) -> TrainState:
    """The checkpoint of `step`, placed as `template`'s arrays are (their shardings)."""
    dynamic, static = eqx.partition(template, eqx.is_array)
    target = {
        "leaves": [
            jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding)
            for a in jax.tree.leaves(dynamic)
        ]
    }
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    dynamic = jax.tree.unflatten(jax.tree.structure(dynamic), restored["leaves"])
    return eqx.combine(dynamic, static)


def restore(workdir: str | os.PathLike, step: int | None = None) -> TrainState:
    """The train state of a checkpoint in `workdir`: the latest intact one, or the one
    of `step` (kept when it is among the latest or a multiple of `config.keep_every`).
    A damaged latest checkpoint is reported, moved aside and the previous one used
    (`restore_latest_intact`).

    **Raises:**

    `FileNotFoundError` when `workdir` holds no config or no checkpoint (of `step`).
    """
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"No training run in {workdir} (missing config.json).")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    meta = json.loads((workdir / "run.json").read_text())
    manager = checkpoint_manager(workdir, config)
    template = init_state(config, meta["num_classes"])
    try:
        steps = manager.all_steps()
        if step is None and steps:
            state = restore_latest_intact(manager, template)
            if state is not None:
                return state
            steps = []
        if not steps or step not in steps:
            kept = f"kept: {sorted(steps)}" if steps else "none intact"
            which = "" if step is None else f" of step {step}"
            raise FileNotFoundError(f"No checkpoint{which} in {workdir / 'checkpoints'} ({kept}).")
        return restore_into(manager, template, step)
    finally:
        manager.close()
