"""A small classifier whose penultimate features give a data-set-specific FD.

Inception features need weights from the internet; this classifier is trained on the
data set itself (the built-in patch classes on the CPU presets), once per data set
and seed, deterministically, and cached on disk.
"""

import hashlib
import io
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._io import atomic_write_bytes
from ._nets._blocks import Conv2d, to_channels_last


class PatchClassifier(eqx.Module):
    """Three stride-2 convolutions, global average pooling, a linear readout; the
    pooled 128-d activations are the features."""

    convs: list
    readout: eqx.nn.Linear

    def __init__(self, num_classes: int, in_channels: int = 3, *, key: PRNGKeyArray):
        keys = jax.random.split(key, 4)
        widths = (in_channels, 32, 64, 128)
        self.convs = [Conv2d(a, b, 3, key=k) for a, b, k in zip(widths[:-1], widths[1:], keys)]
        self.readout = eqx.nn.Linear(widths[-1], num_classes, key=keys[3])

    def features(self, x: Float[Array, "C H W"]) -> Float[Array, " 128"]:
        x = to_channels_last(x)
        for conv in self.convs:
            h = jax.nn.gelu(conv(x))
            x = h[::2, ::2]  # stride 2
        return jnp.mean(x, axis=(0, 1))

    def __call__(self, x: Float[Array, "C H W"]) -> Float[Array, " classes"]:
        return self.readout(self.features(x))


def _fingerprint(images: np.ndarray, labels: np.ndarray, seed: int, steps: int) -> str:
    digest = hashlib.sha256()
    for part in (images.astype(np.float32).tobytes(), labels.astype(np.int32).tobytes()):
        digest.update(part)
    digest.update(json.dumps({"seed": seed, "steps": steps, "shape": images.shape}).encode())
    return digest.hexdigest()[:16]


def train_classifier(
    images: ArrayLike,
    labels: ArrayLike,
    *,
    seed: int = 0,
    steps: int = 600,
    batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
) -> PatchClassifier:
    """Train (or load from the cache) the feature classifier on `(N, C, H, W)` images.

    Deterministic for a given data set, seed and step count; the cache key is a hash
    of exactly those, so a cached classifier is always the one this call would train.
    The cache defaults to `$SPECTRAL_DIFFUSION_CACHE` or `~/.cache/spectral_diffusion`.
    """
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int32)
    if images.ndim != 4 or len(images) == 0 or labels.shape != (len(images),):
        raise ValueError(
            "`images` must be (N >= 1, C, H, W) with (N,) `labels`, "
            f"got {images.shape} and {labels.shape}."
        )
    num_classes = int(labels.max()) + 1
    template = PatchClassifier(num_classes, images.shape[1], key=jax.random.key(seed))
    cache_dir = Path(
        cache_dir
        or os.environ.get("SPECTRAL_DIFFUSION_CACHE")
        or Path.home() / ".cache" / "spectral_diffusion"
    )
    path = cache_dir / f"classifier-{_fingerprint(images, labels, seed, steps)}.eqx"
    if path.is_file():
        return eqx.tree_deserialise_leaves(path, template)

    optimizer = optax.adam(1e-3)
    params = eqx.filter(template, eqx.is_array)
    opt_state = optimizer.init(params)

    @eqx.filter_jit
    def step(model, opt_state, x, y):
        def loss(model):
            logits = jax.vmap(model)(x)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

        grads = eqx.filter_grad(loss)(model)
        with jax.numpy_dtype_promotion("standard"):  # optax: float ** int32
            updates, opt_state = optimizer.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state

    model, rng = template, np.random.default_rng(seed)
    for _ in range(steps):
        index = rng.choice(len(images), min(batch_size, len(images)), replace=False)
        model, opt_state = step(model, opt_state, images[index], labels[index])
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, model)
    atomic_write_bytes(path, buffer.getvalue())
    return model
