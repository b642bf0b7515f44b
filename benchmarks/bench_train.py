"""Training and sampling throughput of the cpu preset, side by side with PyTorch.

    pip install -e '.[dev,bench]' && python benchmarks/bench_train.py

One run measures, at 2 and at 1 CPU thread (each in a fresh process pinned to that
many cores, PyTorch with `torch.set_num_threads`):

1. the train step (forward, backward, clipping, AdamW, EMA) of
   `spectral_diffusion.train.PRESETS["cpu"]` (batch 32, 32 px, the 1,293,155-parameter
   U-ViT; per-example spectral schedules), jitted, after compilation;
2. the same step of a PyTorch eager port of that U-ViT (`torch_peers.TorchUViT`, same
   parameter count) and of diffusers' `UNet2DModel` of about the same size;
3. DDIM at NFE 32, batch 32: the Reproduce suite's sampling call
   (`reproduce._sampling.sample_batch`, per-example schedules; on one CPU device the
   batch runs in slices of 8, shared out among host threads, one per core) against
   the port's and diffusers' eager loops (`torch.no_grad`); and the one jitted program
   it calls, on the whole batch, against a bare jitted `lax.scan` making the same 32
   network calls per example (the sampler's overhead ratio, target <= 1.10).

Every worker first calls `spectral_diffusion.train.keep_host_memory()`, as `train()`
does on CPU (`--allocator system` keeps glibc's defaults, for both peers alike).

The workers run in --rounds interleaved rounds (3 by default; each round runs every
peer once at each thread count, in an order rotated from round to round), since a
process's speed drifts by 5-10% from one process to the next, PyTorch's as much as
JAX's. Prints img/s (the median over rounds), ratios (this library over each peer:
the median over rounds of the ratio within a round, with its lowest and highest) and
whether the targets hold on the median ratio: training >= 1.2x the port at 2 threads
and >= 1.0x at 1 thread, sampling >= 1.4x.
Medians of --repeats timings after 2 warm-up steps (DDIM: of --sample-repeats after
--sample-warmup calls, for every peer: a process's first sampling calls after training
ran up to 10% slower than its later ones, see the Benchmarks page).
"""

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from _timing import median_seconds


HERE = Path(__file__).resolve().parent
NFE = 32
IMPLEMENTATIONS = ("jax", "port", "diffusers")
TARGETS = {("train", 2): 1.2, ("train", 1): 1.0, ("sample", 2): 1.4, ("sample", 1): 1.4}


def _jax_worker(repeats: int, sample_repeats: int, sample_warmup: int) -> dict:
    import jax
    import jax.numpy as jnp

    import spectral_diffusion as sd
    from reproduce._sampling import _sample_batch, sample_batch
    from spectral_diffusion._compile import filter_jit
    from spectral_diffusion.train import (
        PRESETS,
        Recipe,
        data_source,
        init_state,
        make_train_step,
    )

    config = PRESETS["cpu"]
    source = data_source(config)
    state = init_state(config, source.num_classes)
    step = make_train_step(Recipe(config, source), source.num_classes)
    batch = config.data.batch_size
    images = jnp.asarray(source.images[:batch])
    labels = jnp.asarray(source.labels[:batch])
    key = jax.random.key(0)
    train = median_seconds(
        lambda: step(state, images, labels, key)[1]["loss"], repeats=repeats, warmup=2
    )

    denoise = state.ema
    schedules = sd.spectral_schedule(sd.rapsd(images))
    cond = sd.Conditioning.of(schedules, labels)
    z1 = jax.random.normal(key, images.shape)
    # The Reproduce suite's sampling call (on one CPU device, slices of 8 examples shared
    # out among host threads, one per core), and the one jitted program it runs, on the
    # whole batch, for the overhead ratio below.
    timed = dict(repeats=sample_repeats, warmup=sample_warmup)
    sample = median_seconds(lambda: sample_batch(denoise, schedules.knots, cond, z1, NFE), **timed)
    sampler = _sample_batch()
    program = median_seconds(
        lambda: sampler(denoise, schedules.knots, cond, z1, NFE, None), **timed
    )

    # The same network calls in a bare loop; the denoiser is an argument, as in the
    # sampler (closed over, its weights would be compile-time constants).
    @functools.partial(filter_jit, program="sample")  # the sampler's compiler options
    def bare(denoise, knots, cond, z1):
        def one(knots, cond, z):
            lam = sd.PiecewiseLinear(knots).logsnr(1.0 - jnp.arange(NFE) / NFE)
            step = lambda z, lam_i: (0.5 * (z + denoise(z, lam_i, cond)), None)  # noqa: E731
            return jax.lax.scan(step, z, lam)[0]

        return jax.vmap(one)(knots, cond, z1)

    bare_s = median_seconds(lambda: bare(denoise, schedules.knots, cond, z1), **timed)
    params = sum(x.size for x in jax.tree.leaves(state.denoiser) if isinstance(x, jax.Array))
    return dict(
        train=train, sample=sample, program=program, bare=bare_s, params=int(params), batch=batch
    )


def _torch_worker(
    which: str, threads: int, repeats: int, sample_repeats: int, sample_warmup: int
) -> dict:
    import numpy as np
    import torch
    from torch_peers import DiffusersUNet, TorchTrainer, TorchUViT, num_parameters

    from spectral_diffusion.train import PRESETS, data_source

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = PRESETS["cpu"]
    source = data_source(config)
    batch = config.data.batch_size
    images = torch.from_numpy(np.asarray(source.images[:batch], np.float32))
    labels = torch.from_numpy(np.asarray(source.labels[:batch], np.int64))
    if which == "port":  # the preset's own network arguments
        kwargs = dict(config.model.kwargs)
        if kwargs.pop("dropout", 0.0):
            raise ValueError("the PyTorch port has no dropout; the cpu preset uses none")
        kwargs.update(image_size=config.data.image_size, num_classes=source.num_classes)
        net = TorchUViT(**kwargs)
    else:
        net = DiffusersUNet(source.num_classes)
    optim = config.optim
    trainer = TorchTrainer(
        net,
        steps=config.steps,
        learning_rate=optim.learning_rate,
        warmup=optim.warmup_steps,
        b2=optim.b2,
        weight_decay=optim.weight_decay,
        grad_clip=optim.grad_clip,
        ema_decay=optim.ema_decay,
    )
    train = median_seconds(lambda: trainer.train_step(images, labels), repeats=repeats, warmup=2)
    z1 = torch.randn_like(images)
    sample = median_seconds(
        lambda: trainer.ddim(z1, labels, NFE), repeats=sample_repeats, warmup=sample_warmup
    )
    return dict(train=train, sample=sample, params=num_parameters(net), batch=batch)


def _worker(args) -> None:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.threads]))
    sys.path.insert(0, str(HERE.parent))  # spectral_diffusion, for both workers
    if args.allocator == "kept":  # as train() sets it; before any computation, both peers
        from spectral_diffusion.train import keep_host_memory

        keep_host_memory()  # a no-op off glibc (macOS): both peers keep the system's
    if args.worker == "jax":
        result = _jax_worker(args.repeats, args.sample_repeats, args.sample_warmup)
    else:
        result = _torch_worker(
            args.worker, args.threads, args.repeats, args.sample_repeats, args.sample_warmup
        )
    print("RESULT " + json.dumps(result))


def _run(which: str, threads: int, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        which,
        "--threads",
        str(threads),
        "--repeats",
        str(args.repeats),
        "--sample-repeats",
        str(args.sample_repeats),
        "--sample-warmup",
        str(args.sample_warmup),
        "--allocator",
        args.allocator,
    ]
    out = subprocess.run(command, capture_output=True, text=True, cwd=HERE)
    if out.returncode:
        raise RuntimeError(f"{which} at {threads} thread(s) failed:\n{out.stderr[-3000:]}")
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _rounds(args) -> dict:
    """Every worker, `args.rounds` times, in interleaved rounds (each round runs every
    peer once at each thread count, the peers' order rotated from round to round): a
    process's speed drifts by 5-10% from one process to the next, for PyTorch as for
    JAX, so one process per peer can flip a verdict. Returns `{(peer, threads): [one
    result per round]}`."""
    from tqdm import tqdm

    runs = {(w, n): [] for n in args.threads for w in IMPLEMENTATIONS}
    order = [(r, n) for r in range(args.rounds) for n in args.threads]
    with tqdm(total=len(runs) * args.rounds, desc="bench_train workers") as bar:
        for r, n in order:
            shift = r % len(IMPLEMENTATIONS)
            for w in IMPLEMENTATIONS[shift:] + IMPLEMENTATIONS[:shift]:
                bar.set_postfix_str(f"round {r + 1}, {w}, {n} thread(s)")
                runs[w, n].append(_run(w, n, args))
                bar.update()
    return runs


def _spread(values: list[float], fmt: str = ".2f") -> str:
    """`median (min-max)` of one value per round; just the value for a single round."""
    middle = format(statistics.median(values), fmt)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sample-repeats", type=int, default=5)
    parser.add_argument("--sample-warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of every worker; the table gives medians over rounds "
        "(img/s: of each peer's rate; x port: of the ratio within each round) and the "
        "ratios' range",
    )
    parser.add_argument(
        "--allocator",
        choices=("kept", "system"),
        default="kept",
        help="kept: every worker (JAX and PyTorch alike) first calls "
        "spectral_diffusion.train.keep_host_memory(), as train() does; system: glibc's "
        "defaults",
    )
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        return _worker(args)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")

    import jax
    import torch

    runs = _rounds(args)
    rounds = "one round" if args.rounds == 1 else f"medians over {args.rounds} rounds"
    print(
        f"# bench_train — {platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, torch {torch.__version__}, allocator {args.allocator}, "
        f"{rounds}\n"
    )
    first = {w: runs[w, args.threads[0]][0] for w in IMPLEMENTATIONS}
    params = {w: first[w]["params"] for w in IMPLEMENTATIONS}
    batch = first["jax"]["batch"]
    print(
        f"Parameters: this library {params['jax']:,}, PyTorch port {params['port']:,}, "
        f"diffusers UNet2DModel {params['diffusers']:,}; batch {batch} at 32 px.\n"
    )
    print(
        "| threads | measurement | this library (JAX) | PyTorch port | diffusers UNet2DModel "
        "| × port | × UNet2DModel | target (× port) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.threads:
        for kind, label in (("train", "train step"), ("sample", f"DDIM, NFE {NFE}")):
            rates = {w: [batch / r[kind] for r in runs[w, n]] for w in IMPLEMENTATIONS}
            ratios = [j / p for j, p in zip(rates["jax"], rates["port"])]
            ratios_unet = [j / d for j, d in zip(rates["jax"], rates["diffusers"])]
            rate = {w: statistics.median(v) for w, v in rates.items()}
            target = TARGETS[kind, n]
            verdict = "met" if statistics.median(ratios) >= target else "**not met**"
            print(
                f"| {n} | {label} | {rate['jax']:.1f} img/s | {rate['port']:.1f} img/s | "
                f"{rate['diffusers']:.1f} img/s | {_spread(ratios)} | {_spread(ratios_unet)} "
                f"| ≥ {target} {verdict} |"
            )
    print()
    if args.rounds > 1:
        print(
            "(img/s: the median over rounds of each peer's rate; × port and × UNet2DModel: "
            "the median, lowest and highest over rounds of the ratio within one round.)\n"
        )
    for n in args.threads:
        results = runs["jax", n]
        overhead = [r["program"] / r["bare"] for r in results]
        print(
            f"Sampler at {n} thread(s): one program on the whole batch "
            f"{_spread([r['program'] * 1e3 for r in results], '.0f')} ms, bare lax.scan "
            f"{_spread([r['bare'] * 1e3 for r in results], '.0f')} ms, overhead ratio "
            f"{_spread(overhead, '.3f')} (target <= 1.10); the suite's call (slices, on "
            f"host threads) {_spread([r['sample'] * 1e3 for r in results], '.0f')} ms"
        )


if __name__ == "__main__":
    main()
