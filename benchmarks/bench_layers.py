"""The cpu preset's U-ViT block by block: forward + backward in JAX against the PyTorch
port, to show where the train step's gap to PyTorch sits.

    pip install -e '.[dev,bench]' && python benchmarks/bench_layers.py --threads 1

Each residual block of the down and up stages, one transformer block, and the whole
network, at the shapes the cpu preset gives them (its batch, 32): the backward pass
of a fixed random cotangent (`sum(cotangent * output)` differentiated; PyTorch's
`output.backward(cotangent)`) with respect to the block's parameters and its input
(the whole network: its parameters), jitted with the
library's CPU compiler options and `vmap` over the batch (no batch groups, so the
figures compare one program per block); the port's blocks (`torch_peers.TorchUViT`)
eager, NCHW. One process pinned to --threads cores; medians of --repeats; glibc's
allocator keeps freed memory (`keep_host_memory`), as in `train()`, and JAX runs each
program on the calling thread (no async dispatch): the whole network without batch
groups has blocks over 64 MiB, which glibc maps afresh on every call when one of XLA's
worker threads allocates them (52,000 page faults a call); the train step escapes
that only because its `equinox.error_if` checks make JAX run it on the calling thread.
`--async-dispatch` keeps JAX's default.
"""

import argparse
import os
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--async-dispatch", action="store_true", help="JAX's default")
    args = parser.parse_args()
    # Before JAX and PyTorch start their thread pools.
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.threads]))

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import torch
    from _timing import median_seconds

    jax.config.update("jax_cpu_enable_async_dispatch", args.async_dispatch)  # before use

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from torch_peers import TorchUViT

    import spectral_diffusion as sd
    from spectral_diffusion._compile import compiler_options
    from spectral_diffusion.train import PRESETS, init_state, keep_host_memory

    keep_host_memory()  # as train() and the other benchmarks do, for both peers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config, classes = PRESETS["cpu"], 15
    batch, size = config.data.batch_size, config.data.image_size
    kwargs = {k: v for k, v in config.model.kwargs.items() if k != "dropout"}
    net = init_state(config, classes).denoiser.net
    port = TorchUViT(**kwargs, image_size=size, num_classes=classes)
    stages = kwargs["stage_channels"]
    embedding_dim = 4 * stages[0]

    def ms(fn) -> float:
        return median_seconds(fn, repeats=args.repeats, warmup=3) * 1e3

    def jax_block(block, shape, call) -> float:
        def loss(block_and_input, e, cotangent):  # differentiated with respect to both
            block, x = block_and_input
            return jnp.sum(cotangent * jax.vmap(call, in_axes=(None, 0, 0))(block, x, e))

        grad = eqx.filter_jit(eqx.filter_grad(loss), compiler_options=compiler_options())
        x = jax.random.normal(jax.random.key(1), (batch, *shape))
        e = jax.random.normal(jax.random.key(2), (batch, embedding_dim))
        out = eqx.filter_eval_shape(jax.vmap(call, in_axes=(None, 0, 0)), block, x, e)
        cotangent = jax.random.normal(jax.random.key(3), out.shape)
        return ms(lambda: grad((block, x), e, cotangent))

    def torch_block(block, shape) -> float:
        x = torch.randn(batch, *shape, requires_grad=True)
        e = torch.randn(batch, embedding_dim)
        cotangent = torch.randn_like(block(x, e))

        def step():
            block.zero_grad()
            x.grad = None
            block(x, e).backward(cotangent)

        return ms(step)

    def res_call(block, x, e):
        return block(x, e, key=None, inference=True)

    rows, channels, side = [], stages[0], size
    per_stage = kwargs["num_res_blocks"]
    for i, (block, twin) in enumerate(zip(net.down, port.down, strict=True)):
        c_in = channels
        channels = stages[i // per_stage]
        shape = (side, side, c_in)
        rows.append((f"down {i}: {c_in} -> {channels} ch at {side} px", 1, shape, block, twin))
        if (i + 1) % per_stage == 0 and i + 1 < len(net.down):
            side //= 2
    for i, (block, twin) in enumerate(zip(net.up, port.up, strict=True)):
        c = stages[::-1][i // per_stage]
        shape = (side, side, channels + c)
        rows.append((f"up {i}: {channels + c} -> {c} ch at {side} px", 1, shape, block, twin))
        channels = c
        if (i + 1) % per_stage == 0 and i + 1 < len(net.up):
            side *= 2
    tokens = (size // 2 ** (len(stages) - 1)) ** 2
    rows.append(
        (
            f"transformer block: {tokens} tokens x {kwargs['dim']}",
            len(net.transformer),
            (tokens, kwargs["dim"]),
            net.transformer[0],
            port.transformer[0],
        )
    )

    print(
        f"# bench_layers — {args.threads} thread(s), "
        f"{'async' if args.async_dispatch else 'no async'} dispatch, "
        f"jax {jax.__version__}, torch {torch.__version__}\n"
    )
    print(f"| block (batch {batch}) | JAX fwd + bwd | PyTorch port fwd + bwd | JAX / PyTorch |")
    print("|---|---|---|---|")
    total = [0.0, 0.0]
    for name, count, shape, block, twin in rows:
        call = res_call if "transformer" not in name else (lambda b, x, e: b(x, e, key=None))
        torch_shape = shape if "transformer" in name else (shape[2], shape[0], shape[1])
        j, t = jax_block(block, shape, call), torch_block(twin, torch_shape)
        total[0], total[1] = total[0] + count * j, total[1] + count * t
        times = f" (x{count})" if count > 1 else ""
        print(f"| {name}{times} | {j:.2f} ms | {t:.2f} ms | {j / t:.2f} |")
    print(
        f"| sum of the blocks, each counted as often as the network runs it | "
        f"{total[0]:.1f} ms | {total[1]:.1f} ms | {total[0] / total[1]:.2f} |"
    )

    cond = sd.Conditioning(
        label=jnp.zeros(batch, jnp.int32),
        logsnr_0=jnp.full(batch, 10.0),
        logsnr_1=jnp.full(batch, -10.0),
    )
    z = jax.random.normal(jax.random.key(3), (batch, 3, size, size))
    lam = jnp.linspace(-5.0, 5.0, batch)

    def network_loss(net, z, lam, cond, cotangent):
        return jnp.sum(cotangent * jax.vmap(net)(z, lam, cond))

    grad = eqx.filter_jit(eqx.filter_grad(network_loss), compiler_options=compiler_options())
    cotangent = jax.random.normal(jax.random.key(4), z.shape)
    j = ms(lambda: grad(net, z, lam, cond, cotangent))
    inputs = (
        torch.randn(batch, 3, size, size),
        torch.linspace(-5.0, 5.0, batch),
        torch.zeros(batch, dtype=torch.long),
        torch.full((batch,), 10.0),
        torch.full((batch,), -10.0),
    )

    cotangent = torch.randn(batch, 3, size, size)

    def port_step():
        port.zero_grad()
        port(*inputs).backward(cotangent)

    t = ms(port_step)
    print(f"| whole network | {j:.1f} ms | {t:.1f} ms | {j / t:.2f} |")


if __name__ == "__main__":
    main()
