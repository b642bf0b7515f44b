"""The training loop: data-parallel steps, EMA, checkpoints, exact resume."""

import functools
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int
from tqdm import tqdm

from .. import data as data_lib
from .._compile import filter_jit, keep_host_memory
from .._io import append_line, atomic_write_text
from ._checkpoints import (
    MIXTURE_FILE,
    TrainState,
    checkpoint_manager,
    init_state,
    restore_latest_intact,
    save_checkpoint,
)
from ._config import TrainConfig
from ._recipe import Recipe, data_source, fit_mixture, num_classes_of


def ema_decay(decay: float, step: Int[Array, "*shape"]) -> Float[Array, "*shape"]:
    r"""The EMA decay at `step`: $\min(d, (1 + t) / (10 + t))$.

    A fixed decay $d$ keeps a weight $d^t$ on the initial parameters: 0.45 after 800
    steps at $d = 0.999$, which leaves short runs' EMA networks mostly random. The
    warm-up (as in TensorFlow's `ExponentialMovingAverage(num_updates=...)`) averages
    over roughly the last $t/10$ steps early on and reaches $d$ after $9/(1 - d)$ steps.
    """
    t = step.astype(jnp.float32)
    return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def make_train_step(recipe: Recipe, num_classes: int) -> Callable:
    """The jitted step `(state, images, labels, key) -> (state, metrics)`: each batch's
    schedules (`recipe.schedule_for(images)`), the loss under the recipe's proposal, its
    gradient, the optimiser update and the EMA, in one XLA program. On one CPU device the
    batch's losses are computed in independent groups (for the U-ViT only its
    transformer, its convolutions on the whole batch) and the program is compiled with
    XLA's own convolutions and dots rather than YNNPACK's (the same values up to float
    rounding, faster: see the Benchmarks page). In a loop of your own on CPU, call
    [`spectral_diffusion.train.keep_host_memory`][] first, as `train` does."""
    config = recipe.config

    def train_step(state: TrainState, images, labels, key):
        schedule = recipe.schedule_for(images)

        def objective(denoiser):
            return recipe.batch_loss(
                denoiser, schedule, images, labels, key=key, num_classes=num_classes
            )

        value, grads = eqx.filter_value_and_grad(objective)(state.denoiser)
        params = eqx.filter(state.denoiser, eqx.is_array)
        # optax's Adam bias correction computes float ** int32, which strict dtype
        # promotion rejects; keep users' strict mode working around it.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = recipe.optimizer.update(grads, state.opt_state, params)
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

    return filter_jit(train_step)


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

    Data parallel over all devices (`jax.sharding`: the batch is split along the
    `"data"` axis of [`spectral_diffusion.data.data_mesh`][], parameters are
    replicated); with `config.distributed`, `jax.distributed.initialize()` joins a
    multi-host run first. A per-example spectral run first fits the schedule mixture
    generation samples from ([`spectral_diffusion.train.fit_mixture`][], saved in
    `workdir`). Checkpoints (orbax, atomic) every `config.checkpoint_every` steps, at
    the end, and when SIGTERM or SIGINT arrives. Resuming continues from the latest
    checkpoint and gives the same parameters as an uninterrupted run: step $i$'s batch
    and key are fixed functions of `config.seed` and $i$. Metrics go to
    `workdir/metrics.jsonl`. On the CPU backend it first calls
    [`spectral_diffusion.train.keep_host_memory`][] (process-wide allocator settings).

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
    if jax.default_backend() == "cpu":
        keep_host_memory()  # XLA:CPU's per-step buffers on mapped pages: 20% of a step
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    total = config.steps if steps is None else steps
    Recipe(config)  # every config choice is checked before any slow setup
    if config.data.batch_size % jax.device_count():
        raise ValueError(
            f"`data.batch_size` {config.data.batch_size} must be divisible by the "
            f"{jax.device_count()} devices."
        )
    config_path = workdir / "config.json"
    if config_path.is_file() and json.loads(config_path.read_text()) != json.loads(
        config.to_json()
    ):
        raise ValueError(f"{workdir} holds a run with a different config; use a new workdir.")
    say = tqdm.write if progress else (lambda line: None)
    say(f"setup: loading data ({config.data.source}, {config.data.image_size} px)")
    source = data_source(config)
    if config.schedule.kind == "global_spectral":
        say(f"setup: the global spectral schedule from {len(source)} spectra")
    recipe, num_classes = Recipe(config, source), num_classes_of(source)
    atomic_write_text(config_path, config.to_json())
    atomic_write_text(workdir / "run.json", json.dumps({"num_classes": num_classes}))
    if recipe.per_example and not (workdir / MIXTURE_FILE).is_file():
        say(f"setup: fitting the schedule mixture to {len(source)} spectral schedules")
        fit_mixture(config, source).save(workdir / MIXTURE_FILE)

    mesh = data_lib.data_mesh()
    split = data_lib.batch_sharding(mesh)
    state = _place(init_state(config, num_classes), data_lib.replicated(mesh))
    manager = checkpoint_manager(workdir, config)
    state = restore_latest_intact(manager, state, report=tqdm.write) or state
    start = int(state.step)
    _truncate_metrics(workdir / "metrics.jsonl", start, report=tqdm.write)

    batches = data_lib.training_batches(
        source, config.data.batch_size, seed=config.seed, flip=config.data.flip
    )
    if config.schedule.kind == "global_spectral":  # its schedule depends on the data
        train_step = make_train_step(recipe, num_classes)
    else:  # calling train() again (resume, more steps) reuses the compiled step
        train_step = _reused_step(make_train_step, config.to_json(), num_classes)
    base_key = jax.random.key(config.seed + 1)
    step_key = jax.jit(jax.random.fold_in)  # op by op it cost 2.6 ms of host time a step
    per_host = config.data.batch_size // jax.process_count()
    host = slice(jax.process_index() * per_host, (jax.process_index() + 1) * per_host)

    if start < total:
        say(f"setup: compiling the train step (from step {start})")
    bar = tqdm(total=total, initial=start, desc="train", unit="step", disable=not progress)
    tick, seen = time.perf_counter(), 0
    health = jnp.array([-1, 0], jnp.int32)  # see _watch
    watch = _watch_program()
    try:
        with _StopRequested() as stop, open(workdir / "metrics.jsonl", "a") as log:
            for step in range(start, total):
                batch = batches[step]
                images = jax.make_array_from_process_local_data(split, batch["image"][host])
                labels = jax.make_array_from_process_local_data(split, batch["label"][host])
                key = step_key(base_key, step)
                state, metrics = train_step(state, images, labels, key)
                health = watch(health, jnp.int32(step + 1), metrics, state.denoiser)
                seen += config.data.batch_size
                done = step + 1
                log_now = done % config.log_every == 0 or done == total
                save_now = done % config.checkpoint_every == 0 or done == total or stop.requested
                if log_now or save_now:
                    _check_health(health, manager)
                if log_now:
                    metrics = {k: float(v) for k, v in metrics.items()}
                    rate = seen / (time.perf_counter() - tick)
                    tick, seen = time.perf_counter(), 0
                    record = {"step": done, **metrics, "images_per_second": rate}
                    append_line(log, json.dumps(record))
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", img_s=f"{rate:.0f}")
                bar.update(1)
                if save_now:
                    save_checkpoint(manager, state)
                if stop.requested:
                    bar.write(f"Stopped at step {done}; checkpoint saved. Run again to resume.")
                    break
    finally:
        bar.close()
        manager.close()
    return state


#: `_watch`'s state is (first step with a non-finite quantity or -1, which quantity);
#: it is created inside train(), after `jax.distributed.initialize()`.
_QUANTITIES = ("", "loss", "gradient norm", "parameters")


class TrainingDiverged(FloatingPointError):
    """A loss, gradient or parameter became NaN or infinite; nothing non-finite was
    checkpointed."""


@functools.cache
def _watch_program() -> Callable:
    """`_watch` jitted once per process, on first use: after
    `jax.distributed.initialize()`, since `filter_jit` asks the backend for its
    compiler options. The library's `filter_jit` rather than `equinox.filter_jit`,
    which partitions the network's pytree in Python on every call (a call returned
    after 1.3 ms, against 0.8-1.1 ms here, on the cpu preset's network)."""
    return filter_jit(_watch)


def _watch(health, step, metrics, denoiser):
    """Record the first step at which the loss, the gradients or the parameters stop
    being finite (on device: no host round-trip per step)."""
    params = jax.tree.leaves(eqx.filter(denoiser, eqx.is_inexact_array))
    params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in params]))
    code = jnp.where(
        ~jnp.isfinite(metrics["loss"]),
        1,
        jnp.where(~jnp.isfinite(metrics["grad_norm"]), 2, jnp.where(params_finite, 0, 3)),
    )
    first = (health[0] < 0) & (code > 0)
    return jnp.where(first, jnp.stack([step, code]).astype(jnp.int32), health)


def _check_health(health, manager) -> None:
    step, code = (int(v) for v in jax.device_get(health))
    if step < 0:
        return
    good = manager.latest_step()
    last = (
        f"the last good checkpoint is step {good} in {manager.directory}"
        if good is not None
        else "no checkpoint was written yet"
    )
    raise TrainingDiverged(
        f"Training diverged: non-finite {_QUANTITIES[code]} at step {step}; nothing "
        f"after it was checkpointed, {last}. Lower optim.learning_rate or raise "
        f"optim.warmup_steps, then resume or start a new workdir."
    )


@functools.lru_cache(maxsize=4)
def _reused_step(factory: Callable, config_json: str, num_classes: int) -> Callable:
    config = TrainConfig.from_dict(json.loads(config_json))
    return factory(Recipe(config), num_classes)


def _place(tree, sharding):
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(dynamic, sharding), static)


def _truncate_metrics(path: Path, step: int, *, report: Callable[[str], None] = print) -> None:
    """Drop log lines past the restored step, so a resumed run's log has no duplicates,
    and a partly written line (a crash mid-append), reported in one line."""
    if not path.is_file():
        return
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            report(f"Dropping line {number} of {path}: partly written ({line[:40]!r}).")
            continue
        if record["step"] <= step:
            kept.append(line)
    atomic_write_text(path, "".join(line + "\n" for line in kept))
