"""Deterministic, well-scaled stand-in weights for the FID Inception, defined by a
formula (no RNG), so PyTorch (pytorch-fid) and the test suite build identical networks."""

import numpy as np


def formula_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    out = {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        size = int(np.prod(shape))
        wave = np.sin(np.arange(size, dtype=np.float64) * 0.7311 + 1.37 * i).reshape(shape)
        if name.endswith("running_var"):
            value = 0.75 + 0.25 * wave
        elif name.endswith(("running_mean", "bn.bias")):
            value = 0.1 * wave
        elif name.endswith("bn.weight"):
            value = 1.0 + 0.1 * wave
        elif name == "fc.bias":
            value = 0.01 * wave
        else:  # conv / fc weights: He scale (sin has variance 1/2)
            fan = size // shape[0]
            value = np.sqrt(4.0 / fan) * wave
        out[name] = value.astype(np.float32)
    return out


def formula_images() -> np.ndarray:
    """Three 32 px RGB images in [0, 1] (pytorch-fid's input range)."""
    grid = np.arange(3 * 3 * 32 * 32, dtype=np.float64).reshape(3, 3, 32, 32)
    return (0.5 + 0.5 * np.sin(grid * 0.0137) * np.cos(grid * 0.00071)).astype(np.float32)
