"""The training loop: data-parallel steps, EMA, checkpoints, exact resume."""

import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from jaxtyping import Array, Float, Int, PRNGKeyArray
from tqdm import tqdm

from .. import data as data_lib
from .._checks import check_choice
from .._io import atomic_write_text
from .._losses import EpsLoss, Loss, SigmoidWeighting, VLoss, WeightedEpsLoss, batch_loss
from .._mixture import ScheduleMixture
from .._nets import PARAMETERISATIONS, Denoiser, UNet, UViT
from .._proposals import Proposal, ScheduleProposal, TruncatedProposal
from .._schedules import Cosine, InterpolatedCosine, PiecewiseLinear, Schedule
from .._schedules._spectral import global_spectral_schedule, spectral_schedule
from .._spectrum import rapsd
from ._config import TrainConfig


# ---------------------------------------------------------------- building blocks


def build_source(config: TrainConfig, split: str = "train"):
    data = config.data
    builders = {
        "builtin_patches": lambda: data_lib.BuiltinPatches(
            data.image_size, split, patches_per_image=data.patches_per_image, seed=config.seed
        ),
        "npz": lambda: data_lib.npz_source(data.path),
        "image_folder": lambda: data_lib.image_folder(data.path, data.image_size),
        "cifar10": lambda: data_lib.cifar10(data.path, split),
        "tfds": lambda: data_lib.TFDSArrayRecord(data.path, split, data.image_size),
    }
    check_choice(data.source, "data.source", builders)
    if data.source != "builtin_patches" and not data.path:
        raise ValueError(f"`data.path` is required for data.source={data.source!r}.")
    return builders[data.source]()


def build_denoiser(config: TrainConfig, num_classes: int, *, key: PRNGKeyArray) -> Denoiser:
    model = config.model
    architectures = {"unet": UNet, "uvit": UViT}
    check_choice(model.architecture, "model.architecture", architectures)
    check_choice(model.parameterisation, "model.parameterisation", PARAMETERISATIONS)
    net = architectures[model.architecture](
        image_size=config.data.image_size, num_classes=num_classes, key=key, **model.kwargs
    )
    return Denoiser(net, PARAMETERISATIONS[model.parameterisation]())


def build_loss(config: TrainConfig) -> Loss:
    loss = config.loss
    kinds = {
        "weighted_eps": lambda: WeightedEpsLoss(SigmoidWeighting(loss.bias), loss.multiscale_base),
        "eps": lambda: EpsLoss(loss.multiscale_base),
        "v": lambda: VLoss(loss.multiscale_base),
    }
    check_choice(loss.kind, "loss.kind", kinds)
    return kinds[loss.kind]()


#: Schedule kinds built from the data's spectra (per instance or global).
SPECTRAL_KINDS = ("spectral", "global_spectral")


def baseline_schedule(config: TrainConfig) -> Schedule:
    """The SiD2 baseline schedule at the config's resolution: the interpolated cosine
    from `schedule.low` (the plain cosine over [-15, 15] at or below `low` pixels)."""
    size = config.data.image_size
    return InterpolatedCosine(size, low=min(config.schedule.low, size))


def build_proposal(config: TrainConfig) -> Proposal:
    """The training proposal `loss.proposal` names ("auto": truncated to each example's
    range for the spectral kinds, the schedule's own density otherwise)."""
    choice = config.loss.proposal
    check_choice(choice, "loss.proposal", dict.fromkeys(("auto", "schedule", "truncated")))
    if choice == "auto":
        choice = "truncated" if config.schedule.kind in SPECTRAL_KINDS else "schedule"
    if choice == "schedule":
        return ScheduleProposal()
    return TruncatedProposal(baseline_schedule(config))


class ScheduleSource(NamedTuple):
    """How a run gets its schedules: `knots(images)` computes per-example knots in the
    data pipeline (or is `None`), and `schedule(knots)` turns a batch's knots (or
    `None`) into the schedule(s) the loss uses."""

    knots: Callable[[np.ndarray], np.ndarray] | None
    schedule: Callable[[Float[Array, "B K"] | None], Schedule]


def spectral_options(config: TrainConfig) -> dict:
    """Keyword arguments of `spectral_schedule` that the config sets."""
    s = config.schedule
    return dict(
        kind=s.spectral_kind,
        weight=s.weight,
        num_knots=s.num_knots,
        eps_hi=s.eps_hi,
        eps_lo=s.eps_lo,
    )


def build_schedules(config: TrainConfig, source) -> ScheduleSource:
    s = config.schedule
    spectral = spectral_options(config)
    kinds = {"spectral", "global_spectral", "interpolated_cosine", "cosine"}
    check_choice(s.kind, "schedule.kind", dict.fromkeys(kinds))
    if s.kind == "spectral":
        knots = jax.jit(lambda images: spectral_schedule(rapsd(images), **spectral).knots)
        return ScheduleSource(knots, PiecewiseLinear)
    if s.kind == "global_spectral":
        fixed = global_spectral_schedule(dataset_rapsd(source), **spectral)
    elif s.kind == "interpolated_cosine":
        fixed = baseline_schedule(config)
    else:
        fixed = Cosine()
    return ScheduleSource(None, lambda knots: fixed)


def dataset_rapsd(source, batch_size: int = 256) -> Float[np.ndarray, "N bins"]:
    """RAPSD of every example of a source, computed in batches."""
    run = jax.jit(rapsd)
    out = []
    for start in range(0, len(source), batch_size):
        images = np.stack(
            [source[i]["image"] for i in range(start, min(start + batch_size, len(source)))]
        )
        out.append(np.asarray(run(images)))
    return np.concatenate(out)


#: Where a run keeps the schedule mixture that generation samples from.
MIXTURE_FILE = "schedule_mixture.npz"


def fit_schedule_mixture(config: TrainConfig, source, num_classes: int) -> ScheduleMixture:
    """The class-conditional mixture over the training set's spectral schedules."""
    s = config.schedule
    knots = spectral_schedule(jnp.asarray(dataset_rapsd(source)), **spectral_options(config)).knots
    labels = np.asarray([source[i]["label"] for i in range(len(source))])
    return ScheduleMixture.fit(
        knots,
        labels,
        num_classes=num_classes,
        num_components=s.mixture_components,
        key=jax.random.key(config.seed),
    )


def build_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    o = config.optim
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, o.learning_rate, max(o.warmup_steps, 1), max(config.steps, o.warmup_steps + 1)
    )
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip),
        optax.adamw(schedule, b2=o.b2, weight_decay=o.weight_decay),
    )


# ---------------------------------------------------------------- state and step


class TrainState(eqx.Module):
    denoiser: Denoiser
    ema: Denoiser
    opt_state: optax.OptState
    step: Int[Array, ""]


def init_state(config: TrainConfig, num_classes: int) -> TrainState:
    denoiser = build_denoiser(config, num_classes, key=jax.random.key(config.seed))
    opt_state = build_optimizer(config).init(eqx.filter(denoiser, eqx.is_array))
    return TrainState(denoiser, denoiser, opt_state, jnp.zeros((), jnp.int32))


def ema_decay(decay: float, step: Int[Array, "*shape"]) -> Float[Array, "*shape"]:
    r"""The EMA decay at `step`: $\min(d, (1 + t) / (10 + t))$.

    A fixed decay $d$ keeps a weight $d^t$ on the initial parameters: 0.45 after 800
    steps at $d = 0.999$, which leaves short runs' EMA networks mostly random. The
    warm-up (as in TensorFlow's `ExponentialMovingAverage(num_updates=...)`) averages
    over roughly the last $t/10$ steps early on and reaches $d$ after $9/(1 - d)$ steps.
    """
    t = step.astype(jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def make_train_step(
    config: TrainConfig, num_classes: int, schedule_of: Callable[..., Schedule]
) -> Callable:
    loss, optimizer = build_loss(config), build_optimizer(config)
    proposal = build_proposal(config)

    @eqx.filter_jit
    def train_step(state: TrainState, images, labels, knots, key):
        def objective(denoiser):
            return batch_loss(
                loss,
                denoiser,
                schedule_of(knots),
                images,
                labels,
                key=key,
                label_dropout=config.label_dropout,
                num_classes=num_classes,
                proposal=proposal,
            )

        value, grads = eqx.filter_value_and_grad(objective)(state.denoiser)
        params = eqx.filter(state.denoiser, eqx.is_array)
        # optax's Adam bias correction computes float ** int32, which strict dtype
        # promotion rejects; keep users' strict mode working around it.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, params)
        denoiser = eqx.apply_updates(state.denoiser, updates)
        decay = ema_decay(config.optim.ema_decay, state.step)
        ema = jax.tree.map(
            lambda e, p: decay * e + (1.0 - decay) * p,
            eqx.filter(state.ema, eqx.is_array),
            eqx.filter(denoiser, eqx.is_array),
        )
        ema = eqx.combine(ema, state.ema)
        metrics = {"loss": value, "grad_norm": optax.tree_utils.tree_norm(grads)}
        return TrainState(denoiser, ema, opt_state, state.step + 1), metrics

    return train_step


# ---------------------------------------------------------------- checkpoints


def _manager(workdir: Path, config: TrainConfig) -> ocp.CheckpointManager:
    # Orbax writes each checkpoint to a temporary directory and renames it when
    # complete: a crash never leaves a half-written checkpoint behind.
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, keep_period=config.keep_every, create=True
        ),
    )


def _arrays(state: TrainState) -> dict:
    return {"leaves": jax.tree.leaves(eqx.filter(state, eqx.is_array))}


def save_checkpoint(manager: ocp.CheckpointManager, state: TrainState) -> None:
    manager.save(int(state.step), args=ocp.args.StandardSave(_arrays(state)), force=True)
    manager.wait_until_finished()


def _restore_into(manager: ocp.CheckpointManager, template: TrainState, step: int) -> TrainState:
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
    """The train state of a checkpoint in `workdir`: the latest, or the one of `step`
    (kept when it is among the latest or a multiple of `config.keep_every`).

    **Raises:**

    `FileNotFoundError` when `workdir` holds no config or no checkpoint (of `step`).
    """
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"No training run in {workdir} (missing config.json).")
    config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    meta = json.loads((workdir / "run.json").read_text())
    manager = _manager(workdir, config)
    steps = manager.all_steps()
    if not steps or (step is not None and step not in steps):
        kept = f"kept: {sorted(steps)}" if steps else "none kept"
        which = "" if step is None else f" of step {step}"
        raise FileNotFoundError(f"No checkpoint{which} in {workdir / 'checkpoints'} ({kept}).")
    step = manager.latest_step() if step is None else step
    return _restore_into(manager, init_state(config, meta["num_classes"]), step)


# ---------------------------------------------------------------- the loop


class _StopRequested:
    """SIGTERM/SIGINT set a flag; the loop checkpoints and returns at the next step."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(
    config: TrainConfig,
    workdir: str | os.PathLike,
    *,
    steps: int | None = None,
    progress: bool = True,
) -> TrainState:
    r"""Train (or resume training) a denoiser as `config` says, in `workdir`.

    Data parallel over all devices (`jax.sharding`: the batch is split along a
    `"data"` mesh axis, parameters are replicated); with `config.distributed`,
    `jax.distributed.initialize()` joins a multi-host run first. Checkpoints (orbax,
    atomic) every `config.checkpoint_every` steps, at the end, and when SIGTERM or
    SIGINT arrives. Resuming continues from the latest checkpoint and gives the same
    parameters as an uninterrupted run: step $i$'s batch and key are fixed functions of
    `config.seed` and $i$. Metrics go to `workdir/metrics.jsonl`.

    **Arguments:**

    - `config`: a [`spectral_diffusion.train.TrainConfig`][].
    - `workdir`: where checkpoints, `config.json` and metrics live.
    - `steps`: train until this step (default `config.steps`).
    - `progress`: show a progress bar (loss, img/s).

    **Returns:**

    The final [`spectral_diffusion.train.TrainState`][].
    """
    if config.distributed:
        jax.distributed.initialize()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    total = config.steps if steps is None else steps
    # Config choices are resolved before any slow setup, so a typo fails at once.
    build_loss(config), build_proposal(config)
    source = build_source(config)
    num_classes = getattr(source, "num_classes", 1)
    config_path = workdir / "config.json"
    if config_path.is_file() and json.loads(config_path.read_text()) != json.loads(
        config.to_json()
    ):
        raise ValueError(f"{workdir} holds a run with a different config; use a new workdir.")
    atomic_write_text(config_path, config.to_json())
    atomic_write_text(workdir / "run.json", json.dumps({"num_classes": num_classes}))

    # Auto axes: XLA propagates the batch sharding through every op (GSPMD), so the
    # library's functions need no sharding annotations.
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("data"))
    if config.data.batch_size % jax.device_count():
        raise ValueError(
            f"`data.batch_size` {config.data.batch_size} must be divisible by the "
            f"{jax.device_count()} devices."
        )
    if config.schedule.kind == "spectral" and not (workdir / MIXTURE_FILE).is_file():
        fit_schedule_mixture(config, source, num_classes).save(workdir / MIXTURE_FILE)
    state = _place(init_state(config, num_classes), replicated)
    manager = _manager(workdir, config)
    if manager.latest_step() is not None:
        state = _restore_into(manager, state, manager.latest_step())
    start = int(state.step)
    _truncate_metrics(workdir / "metrics.jsonl", start)

    schedules = build_schedules(config, source)
    batches = data_lib.training_batches(
        source,
        config.data.batch_size,
        seed=config.seed,
        flip=config.data.flip,
        knots=schedules.knots,
    )
    train_step = make_train_step(config, num_classes, schedules.schedule)
    base_key = jax.random.key(config.seed + 1)
    per_host = config.data.batch_size // jax.process_count()
    host = slice(jax.process_index() * per_host, (jax.process_index() + 1) * per_host)

    bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not progress)
    tick, seen = time.perf_counter(), 0
    with _StopRequested() as stop, open(workdir / "metrics.jsonl", "a") as log:
        for step in range(start, total):
            batch = batches[step]
            images = jax.make_array_from_process_local_data(split, batch["image"][host])
            labels = jax.make_array_from_process_local_data(split, batch["label"][host])
            knots = batch.get("knots")
            if knots is not None:
                knots = jax.make_array_from_process_local_data(split, knots[host])
            key = jax.random.fold_in(base_key, step)
            state, metrics = train_step(state, images, labels, knots, key)
            seen += config.data.batch_size
            done = step + 1
            if done % config.log_every == 0 or done == total:
                metrics = {k: float(v) for k, v in metrics.items()}
                rate = seen / (time.perf_counter() - tick)
                tick, seen = time.perf_counter(), 0
                if not all(math.isfinite(v) for v in metrics.values()):
                    save_checkpoint(manager, state)
                    raise FloatingPointError(
                        f"Non-finite training metrics at step {done}: {metrics}"
                    )
                log.write(json.dumps({"step": done, **metrics, "images_per_second": rate}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", img_s=f"{rate:.0f}")
            bar.update(1)
            if done % config.checkpoint_every == 0 or done == total or stop.requested:
                save_checkpoint(manager, state)
            if stop.requested:
                bar.write(f"Stopped at step {done}; checkpoint saved. Run again to resume.")
                break
    bar.close()
    manager.close()
    return state


def _place(tree, sharding):
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(dynamic, sharding), static)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past the restored step, so a resumed run's log has no duplicates."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))
