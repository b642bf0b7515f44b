"""Single kernels of the cpu preset's train step: XLA:CPU against PyTorch.

    python benchmarks/bench_kernels.py

The shapes that dominate the cpu preset's step (see profile_train.py): the 3x3
convolutions of the U-ViT's first up-stage block and of the stem stage, forward and
forward + VJP (both gradients), on a batch of 32 and of 8 (one of the train step's
batch groups, one of the sampler's slices), compiled with the train step's CPU options
(XLA's own, Eigen, convolutions), with the Reproduce sampler's (YNNPACK's) and in
PyTorch eager (oneDNN); and the transformer MLP's matmul and its weight-gradient
matmul. One thread count (the machine's), medians of --repeats.
"""

import argparse
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import torch
from _timing import median_seconds


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spectral_diffusion._compile import compiler_options  # noqa: E402


CONVS = {  # (batch, size, c_in, c_out)
    f"3x3 conv {c_in} -> {c_out} ch at {size} px, batch {batch}": (batch, size, c_in, c_out)
    for batch in (32, 8)
    for size, c_in, c_out in ((32, 48, 16), (32, 16, 16), (16, 96, 32))
}


def median_ms(fn, repeats: int) -> float:
    return median_seconds(fn, repeats=repeats, warmup=2) * 1e3


def conv_row(shape, repeats: int) -> list[float]:
    batch, size, c_in, c_out = shape
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, c_in))
    w = 0.1 * jax.random.normal(keys[1], (3, 3, c_in, c_out))
    g = jax.random.normal(keys[2], (batch, size, size, c_out))

    def conv(x, w):
        numbers = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers)

    def vjp(x, w):
        return jax.vjp(conv, x, w)[1](g)

    out = []
    for options in (compiler_options("train"), compiler_options("sample")):
        forward, backward = (jax.jit(f, compiler_options=options) for f in (conv, vjp))
        out.append(median_ms(lambda: forward(x, w).block_until_ready(), repeats))
        out.append(median_ms(lambda: jax.block_until_ready(backward(x, w)), repeats))
    tx = torch.randn(batch, c_in, size, size, requires_grad=True)
    tw = torch.randn(c_out, c_in, 3, 3, requires_grad=True)
    tg = torch.randn(batch, c_out, size, size)

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, padding=1)

    def torch_backward():
        y = torch.nn.functional.conv2d(tx, tw, padding=1)
        torch.autograd.grad(y, (tx, tw), tg)

    out += [median_ms(torch_forward, repeats), median_ms(torch_backward, repeats)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(
        f"# bench_kernels — {len(os.sched_getaffinity(0))} threads, jax {jax.__version__}, "
        f"torch {torch.__version__}\n"
    )
    print(
        "| kernel | Eigen (train step) fwd | fwd + VJP | YNNPACK (sampler) fwd | fwd + VJP "
        "| PyTorch fwd | fwd + backward | Eigen / PyTorch (fwd + bwd) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, shape in CONVS.items():
        r = conv_row(shape, args.repeats)
        cells = " | ".join(f"{v:.2f} ms" for v in r)
        print(f"| {name} | {cells} | {r[1] / r[5]:.2f}x |")
    a, b = jnp.ones((2048, 128)), jnp.ones((128, 512))
    c = jnp.ones((2048, 512))
    forward, weight_grad = jax.jit(lambda a, b: a @ b), jax.jit(lambda a, c: a.T @ c)
    ta, tb, tc = torch.ones(2048, 128), torch.ones(128, 512), torch.ones(2048, 512)
    flops = 2 * 2048 * 128 * 512
    rows = {
        "MLP matmul (2048 x 128) @ (128 x 512)": (
            median_ms(lambda: forward(a, b).block_until_ready(), args.repeats),
            median_ms(lambda: ta @ tb, args.repeats),
        ),
        "its weight gradient (2048 x 128)ᵀ @ (2048 x 512)": (
            median_ms(lambda: weight_grad(a, c).block_until_ready(), args.repeats),
            median_ms(lambda: ta.T @ tc, args.repeats),
        ),
    }
    print("\n| matmul | XLA | PyTorch | XLA GFLOP/s | PyTorch GFLOP/s | XLA / PyTorch time |")
    print("|---|---|---|---|---|---|")
    for name, (mine, theirs) in rows.items():
        print(
            f"| {name} | {mine:.2f} ms | {theirs:.2f} ms | {flops / mine / 1e6:.0f} | "
            f"{flops / theirs / 1e6:.0f} | {mine / theirs:.2f}x |"
        )


if __name__ == "__main__":
    main()
