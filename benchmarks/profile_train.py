"""Where one training step of the cpu preset spends its time.

    python benchmarks/profile_train.py

1. Parts of the step, each jitted alone on the step's own inputs, with the step's
   compiler options and batch groups (medians of --repeats after compilation): the
   batch's schedules and noise levels, the loss (network forward), the loss and its
   gradient (forward + backward), the optimiser update, the EMA, and the whole step;
   and the host work between steps: the img/s `spectral_diffusion.train.train`
   logs over 20 steps (data, transfers, the divergence watch) against the step alone,
   and those pieces of `train`'s loop timed alone, each with the objects `train`
   builds for it.
2. Per-op times of the whole step from a `jax.profiler` trace, joined with the
   compiled HLO: forward (`jvp`) vs backward (`transpose`), by kind of op, by JAX
   operation, and by the library function (layer) whose code traced each kernel.
"""

import argparse
import collections
import gzip
import itertools
import json
import re
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
from _timing import median_seconds


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spectral_diffusion import data as data_lib  # noqa: E402
from spectral_diffusion._compile import filter_jit  # noqa: E402
from spectral_diffusion._proposals import noise_levels  # noqa: E402
from spectral_diffusion.train import (  # noqa: E402
    PRESETS,
    Recipe,
    _trainer,
    data_source,
    init_state,
    keep_host_memory,
    make_train_step,
    train,
)


def setup() -> SimpleNamespace:
    """The cpu preset's recipe, state, jitted step and first batch, shared by both
    measurements (one data load, one compilation of the step)."""
    config = PRESETS["cpu"]
    source = data_source(config)
    recipe, classes = Recipe(config, source), source.num_classes
    batch = config.data.batch_size
    return SimpleNamespace(
        config=config,
        source=source,
        recipe=recipe,
        classes=classes,
        batch=batch,
        state=init_state(config, classes),
        step=make_train_step(recipe, classes),
        images=jnp.asarray(source.images[:batch]),
        labels=jnp.asarray(source.labels[:batch]),
        key=jax.random.key(0),
    )


def parts(run: SimpleNamespace, repeats: int) -> dict[str, float]:
    config, recipe, batch, state = run.config, run.recipe, run.batch, run.state
    images, labels, key, step = run.images, run.labels, run.key, run.step

    def loss(denoiser, images, labels, key):
        schedule = recipe.schedule_for(images)
        return recipe.batch_loss(
            denoiser, schedule, images, labels, key=key, num_classes=run.classes
        )

    @eqx.filter_jit
    def schedules(images, key):
        schedule = recipe.schedule_for(images)
        return noise_levels(recipe.proposal, schedule, batch, key=key)

    grad = filter_jit(eqx.filter_value_and_grad(loss))
    _, grads = grad(state.denoiser, images, labels, key)
    params = eqx.filter(state.denoiser, eqx.is_array)

    @eqx.filter_jit
    def optimiser(grads, opt_state, params):
        with jax.numpy_dtype_promotion("standard"):
            return recipe.optimizer.update(grads, opt_state, params)

    @eqx.filter_jit
    def ema(e, p):
        return jax.tree.map(lambda e, p: 0.999 * e + 0.001 * p, e, p)

    ema_params = eqx.filter(state.ema, eqx.is_array)
    forward = filter_jit(loss)

    # train()'s loop, piece by piece, with the objects train() builds for it.
    batches = data_lib.training_batches(run.source, batch, seed=config.seed, flip=config.data.flip)
    split = data_lib.batch_sharding(data_lib.data_mesh())
    numbers = itertools.count()
    host_batch = batches[0]
    base_key, step_key = jax.random.key(1), jax.jit(jax.random.fold_in)
    health, watch = jnp.array([-1, 0], jnp.int32), _trainer._watch_program()
    _, metrics = step(state, images, labels, key)

    def transfers():
        return [
            jax.make_array_from_process_local_data(split, host_batch[name])
            for name in ("image", "label")
        ]

    timed = {
        "schedules and noise levels": lambda: schedules(images, key),
        "loss (network forward)": lambda: forward(state.denoiser, images, labels, key),
        "loss + gradient": lambda: grad(state.denoiser, images, labels, key),
        "optimiser update": lambda: optimiser(grads, state.opt_state, params),
        "EMA": lambda: ema(ema_params, params),
        "loop: the batch from the data pipeline": lambda: batches[next(numbers)],
        "loop: its transfer to the device": transfers,
        "loop: the step's key": lambda: step_key(base_key, next(numbers)),
        "loop: the divergence watch": lambda: watch(health, jnp.int32(1), metrics, state.denoiser),
        "whole step": lambda: step(state, images, labels, key),
    }
    out = {name: median_seconds(fn, repeats=repeats) for name, fn in timed.items()}

    # Host work: a real `train` run resumed after compilation; the loop's own img/s,
    # logged every 20 steps, median over its windows of steps 21-40, 41-60 and 61-80 (no
    # setup or checkpoint inside; one window alone varied by 10% between runs).
    with tempfile.TemporaryDirectory() as workdir:
        train(config, workdir, steps=2, progress=False)
        train(config, workdir, steps=82, progress=False)
        lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        windows = [batch / r["images_per_second"] for r in records if r["step"] in (40, 60, 80)]
        out["train() per step"] = sorted(windows)[1]
    return out


def _source_locations(hlo: str) -> dict[str, str]:
    """`stack_frame_id` -> "file.py:function" of the library code that traced the op,
    from the compiled HLO's frame tables (the innermost frame JAX records, which is
    the library line under its traceback filtering); "" outside the library."""

    def table(name: str) -> str:
        found = re.search(rf"^{name}\n(.*?)(?=^[A-Za-z]|\Z)", hlo, re.M | re.S)
        return found.group(1) if found else ""

    files = dict(re.findall(r'^(\d+) "(.*)"', table("FileNames"), re.M))
    functions = dict(re.findall(r'^(\d+) "(.*)"', table("FunctionNames"), re.M))
    locations = {
        index: (files.get(file, ""), functions.get(function, ""))
        for index, file, function in re.findall(
            r"^(\d+) \{file_name_id=(\d+) function_name_id=(\d+)", table("FileLocations"), re.M
        )
    }
    frames = re.findall(r"^(\d+) \{file_location_id=(\d+)", table("StackFrames"), re.M)
    out = {}
    for frame, location in frames:
        file, function = locations.get(location, ("", ""))
        inside = "/spectral_diffusion/" in file
        out[frame] = f"{Path(file).name}:{function}" if inside else ""
    return out


def op_profile(run: SimpleNamespace, steps: int = 5) -> tuple[dict, dict, dict, dict, float]:
    """Thunk times per step from a perfetto trace: by phase, by (phase, op kind), by
    the JAX operation a kernel came from (the batch groups' copies of one layer's
    kernel add up under its operation), and by (phase, library function that traced
    it: `_blocks.py:Conv2d.__call__`, `_blocks.py:dense`, ...)."""
    state, images, labels, key, step = run.state, run.images, run.labels, run.key, run.step
    hlo = step.top.lower(state, images, labels, key).compile().compiled.as_text()
    sources = _source_locations(hlo)
    ops, op_source = {}, {}
    for match in re.finditer(r"^\s+(?:ROOT )?%(\S+) = \S+ [\w-]+\((.*)$", hlo, re.M):
        name = re.search(r'op_name="([^"]*)"', match.group(2))
        frame = re.search(r"stack_frame_id=(\d+)", match.group(2))
        ops[match.group(1)] = name.group(1) if name else ""
        op_source[match.group(1)] = sources.get(frame.group(1), "") if frame else ""
    jax.block_until_ready(step(state, images, labels, key))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(steps):
                jax.block_until_ready(step(state, images, labels, key))
        trace = next(Path(trace_dir).rglob("perfetto_trace.json.gz"))
        events = json.load(gzip.open(trace))["traceEvents"]
    by_phase, by_kind, by_op, by_source = (collections.Counter() for _ in range(4))
    for event in events:
        if event.get("ph") != "X" or event["name"] not in ops:
            continue
        op_name = ops[event["name"]]
        phase = "backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name else None
        if phase is None:  # unlabelled: weight-gradient convolutions, layout copies, update
            phase = "backward/other"
        kind = "library kernel (dot, conv, reduce)" if "ynn" in event["name"] else None
        if kind is None:
            base = re.sub(r"\.\d+$", "", event["name"])
            kind = (
                "layout copy / transpose"
                if "copy" in base or "transpose" in base
                else "convolution (XLA)"
                if "conv" in base
                else "elementwise fusion"
            )
        by_phase[phase] += event["dur"] / 1e3 / steps
        by_kind[phase, kind] += event["dur"] / 1e3 / steps
        by_op[op_name or event["name"]] += event["dur"] / 1e3 / steps
        source = op_source[event["name"]] or "outside the network (loss, schedules, update)"
        by_source[phase, source] += event["dur"] / 1e3 / steps
    return by_phase, by_kind, by_op, by_source, sum(by_phase.values())


def print_parts(timings: dict[str, float]) -> None:
    step = timings["whole step"]
    print("| part (jitted alone) | time | share of the step |")
    print("|---|---|---|")
    forward = timings["loss (network forward)"] - timings["schedules and noise levels"]
    backward = timings["loss + gradient"] - timings["loss (network forward)"]
    rows = {
        "schedules and noise levels (RAPSD, spectral schedules, proposal)": timings[
            "schedules and noise levels"
        ],
        "network forward + loss": forward,
        "backward pass": backward,
        "optimiser (clip + AdamW)": timings["optimiser update"],
        "EMA": timings["EMA"],
        "host work between steps (train() per step - step)": timings["train() per step"] - step,
    }
    rows.update(
        {f"  (train()'s loop alone: {k[6:]})": v for k, v in timings.items() if k[:6] == "loop: "}
    )
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e3:.1f} ms | {seconds / step:.0%} |")
    print(f"| whole step (one XLA program) | {step * 1e3:.1f} ms | 100% |")
    print(f"| train() per step, for reference | {timings['train() per step'] * 1e3:.1f} ms | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--top", type=int, default=15, help="kernels listed one by one")
    parser.add_argument(
        "--kernels-only", action="store_true", help="skip the parts; only the op trace"
    )
    args = parser.parse_args()
    keep_host_memory()  # as train() does on CPU, before any computation
    run = setup()
    print(f"# profile_train — cpu preset, jax {jax.__version__}\n")
    if not args.kernels_only:
        print_parts(parts(run, args.repeats))
    by_phase, by_kind, by_op, by_source, total = op_profile(run)
    print(f"\nOp-level trace of the whole step: {total:.0f} ms of kernel time per step\n")
    print("| phase | kind of op | ms per step | share |")
    print("|---|---|---|---|")
    for (phase, kind), ms in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"| {phase} | {kind} | {ms:.1f} | {ms / total:.0%} |")
    print(f"\nThe {args.top} most expensive operations of the step (all their kernels)\n")
    print("| JAX operation | ms per step | share |")
    print("|---|---|---|")
    for op_name, ms in by_op.most_common(args.top):
        print(f"| `{_short(op_name)}` | {ms:.2f} | {ms / total:.1%} |")
    print("\nBy the library function that traced each kernel (`file:function`; a layer's")
    print("backward kernels carry its forward op's source)\n")
    print("| phase | library function | ms per step | share |")
    print("|---|---|---|---|")
    for (phase, source), ms in by_source.most_common(args.top):
        print(f"| {phase} | `{source}` | {ms:.1f} | {ms / total:.0%} |")


def _short(op_name: str, keep: int = 90) -> str:
    """The end of a JAX op path (the part that names the layer), cut to `keep` chars."""
    return op_name if len(op_name) <= keep else "…" + op_name[-keep:]


if __name__ == "__main__":
    main()
