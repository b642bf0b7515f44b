"""Fréchet distance of pixel features: sample-space route vs the covariance route.

    python benchmarks/bench_metrics.py

`sd.metrics.fd` switches to the exact sample-space form (nuclear norm of the
cross-Gram matrix, O(N^2 D)) when a set has fewer points than dimensions, as pixel
features always do at the reproduce suite's N = 300. The covariance route
(`frechet_distance(fit_gaussian(a), fit_gaussian(b))`, two D x D
eigendecompositions) is what a textbook FID does. Both run here side by side on the
same data; the table gives the time ratio and the relative difference of the values.
Also times Inception-v3 FID features (299 px, random weights) per image.
"""

import argparse
import os
import platform

import jax
import numpy as np
from _timing import median_seconds

import spectral_diffusion as sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"# bench_metrics — {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}\n"
    )
    print("| features | N | D | sample-space fd | covariance route | ratio | relative difference |")
    print("|---|---|---|---|---|---|---|")
    for size in (16, 32):
        d = 3 * size * size
        a = rng.normal(size=(300, d)) * np.linspace(0.1, 1.0, d)
        b = rng.normal(size=(300, d)) + 0.05
        fast = median_seconds(lambda: sd.metrics.fd(a, b), repeats=args.repeats)
        slow = median_seconds(
            lambda: sd.metrics.frechet_distance(
                sd.metrics.fit_gaussian(a), sd.metrics.fit_gaussian(b)
            ),
            repeats=args.repeats,
        )
        value = sd.metrics.fd(a, b)
        direct = sd.metrics.frechet_distance(sd.metrics.fit_gaussian(a), sd.metrics.fit_gaussian(b))
        print(
            f"| pixels {size} px | 300 | {d} | {fast * 1e3:.1f} ms | {slow * 1e3:.0f} ms "
            f"| {slow / fast:.0f}x | {abs(value - direct) / direct:.1e} |"
        )
    model = sd.metrics.FIDInception(key=jax.random.key(0))
    features = jax.jit(jax.vmap(model.features))
    images = rng.uniform(-1, 1, (16, 3, 32, 32)).astype(np.float32)
    seconds = median_seconds(features, images, repeats=args.repeats)
    print(
        f"\nInception-v3 FID features: {seconds / len(images) * 1e3:.0f} ms per image (batch 16)."
    )


if __name__ == "__main__":
    main()
