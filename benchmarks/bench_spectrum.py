"""RAPSD throughput: spectral_diffusion (jitted) vs numpy's fft2 alone vs pysteps.

    pip install -e '.[dev,bench]' && python benchmarks/bench_spectrum.py

numpy's `fft2` on the same batch is the floor any RAPSD must pay (it computes the
transform and nothing else); `pysteps.utils.spectral.rapsd` is the implementation
users know (one 2-D field per call, so it is looped over images and channels).
Times are the median of `--repeats` runs after a warm-up (and, for JAX, after
compilation). Prints a markdown table with the ratios.
"""

import argparse
import os
import platform

import jax
import numpy as np
from _timing import median_seconds

import spectral_diffusion as sd


SHAPES = ((256, 3, 64, 64), (32, 3, 256, 256))


def pysteps_rapsd(x: np.ndarray) -> np.ndarray:
    from pysteps.utils.spectral import rapsd

    flat = x.reshape(-1, *x.shape[-2:])
    spectra = np.stack([rapsd(field, fft_method=np.fft) for field in flat])
    return spectra.reshape(*x.shape[:-2], -1).mean(-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    try:
        import pysteps  # noqa: F401

        have_pysteps = True
    except ImportError:
        have_pysteps = False

    rapsd = jax.jit(sd.rapsd)
    print(
        f"# bench_spectrum — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, numpy {np.__version__}\n"
    )
    print(
        "| batch | spectral_diffusion.rapsd (jit) | numpy fft2 alone | pysteps rapsd "
        "| rapsd / fft2 | pysteps / rapsd |"
    )
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        x_device = jax.device_put(x)
        ours = median_seconds(lambda: rapsd(x_device), repeats=args.repeats)
        floor = median_seconds(lambda: np.fft.fft2(x, norm="ortho"), repeats=args.repeats)
        if have_pysteps:
            theirs = median_seconds(lambda: pysteps_rapsd(x), repeats=max(1, args.repeats // 3))
            theirs_cell, ratio_cell = f"{theirs * 1e3:.1f} ms", f"{theirs / ours:.1f}×"
        else:
            theirs_cell = ratio_cell = "not installed"
        print(
            f"| {'×'.join(map(str, shape))} | {ours * 1e3:.1f} ms | {floor * 1e3:.1f} ms "
            f"| {theirs_cell} | {ours / floor:.2f} | {ratio_cell} |"
        )


if __name__ == "__main__":
    main()
