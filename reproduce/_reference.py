"""The held-out reference set every sample is scored against, and the feature maps of
the scores (a classifier trained on the training split, or FID's Inception)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import spectral_diffusion as sd
from spectral_diffusion.train import TrainConfig, data_source, num_classes_of

from .configs.suite import SuiteConfig


class Reference:
    """The held-out images samples are compared with, and the feature maps of the
    scores. Samples reuse the reference labels (class-balanced) and one fixed noise draw
    per seed, shared by every variant (common random numbers)."""

    def __init__(
        self, suite: SuiteConfig, config: TrainConfig, *, fid_weights=None, progress: bool = True
    ):
        self.progress = progress
        size = config.data.image_size
        reference = dataclasses.replace(suite.reference, image_size=size)
        source = data_source(dataclasses.replace(config, data=reference), split="test")
        self.images, self.labels = arrays(source)
        self.train_source = data_source(config)
        # Enough for the classifier; ImageNet-sized sources are never loaded whole.
        train_images, train_labels = arrays(self.train_source, limit=50_000)
        self.num_classes = num_classes_of(self.train_source)
        self.train_images, self.train_labels = train_images, train_labels
        if suite.features == "classifier":
            model = sd.metrics.train_classifier(
                train_images, train_labels, steps=suite.classifier_steps
            )
            self.feature_fn = jax.vmap(model.features)
        elif suite.features == "inception":
            self.feature_fn = jax.vmap(sd.metrics.load_fid_inception(fid_weights).features)
        else:
            raise ValueError(f"Unknown features {suite.features!r}.")
        self.features = suite.features
        self.reference_features = self._features(self.images)
        self.reference_spectra = self._log_rapsd(self.images)
        self._floors: dict[int, tuple[dict, dict]] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def class_oracles(self) -> sd.GaussianSpectral:
        """One Gaussian oracle per class, batched `(num_classes, C, H, W)`: the mean
        power spectrum of the class's training images plus the 8-bit floor (what
        `GaussianSpectral.from_image` takes for one image)."""
        if not hasattr(self, "_class_oracles"):
            floor = sd.quantization_noise_power(sd.BITS)
            means = []
            for c in range(self.num_classes):
                images = self.train_images[self.train_labels == c]
                if len(images) == 0:
                    raise ValueError(f"Class {c} has no training images: no mean spectrum.")
                power = [
                    np.asarray(sd.power_spectrum(images[i : i + 256]), np.float64).sum(0)
                    for i in range(0, len(images), 256)
                ]
                means.append(np.sum(power, 0) / len(images) + floor)
            self._class_oracles = sd.GaussianSpectral(np.stack(means).astype(np.float32))
        return self._class_oracles

    def subset(self, n: int | None) -> np.ndarray:
        """Indices of `n` reference images (all for None), taken class by class in
        turn: the first of every class, then the second, and so on (class-balanced
        when `n` is a multiple of the classes). A smaller evaluation thus reuses the
        same images, labels, noise and schedules as the full one (common random
        numbers)."""
        if n is None or n >= len(self):
            return np.arange(len(self))
        rank = np.zeros(len(self), int)
        for c in np.unique(self.labels):
            rank[self.labels == c] = np.arange(np.sum(self.labels == c))
        return np.sort(np.lexsort((self.labels, rank))[:n])

    def floor_at(self, n: int | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """Scores of sets of `n` real training images (default: as many as the reference)
        against the reference: the floor of every score at that N, as the mean and the
        standard deviation over up to 3 disjoint sets (FD's own noise at this N)."""
        n = len(self) if n is None else n
        if n not in self._floors:
            order = np.random.default_rng(0).permutation(len(self.train_images))
            count = max(1, min(3, len(order) // n))
            floors = [
                self.scores(self.train_images[order[i * n : (i + 1) * n]]) for i in range(count)
            ]
            mean = {k: float(np.mean([f[k] for f in floors])) for k in floors[0]}
            spread = {
                k: float(np.std([f[k] for f in floors], ddof=1)) if count > 1 else 0.0
                for k in floors[0]
            }
            self._floors[n] = mean, spread
        return self._floors[n]

    @property
    def floor(self) -> dict[str, float]:
        return self.floor_at()[0]

    @property
    def floor_spread(self) -> dict[str, float]:
        return self.floor_at()[1]

    def _features(self, images):
        return sd.metrics.extract(
            self.feature_fn, images, desc=self.features, progress=self.progress
        )

    def _log_rapsd(self, images):
        return sd.metrics.extract(
            sd.metrics.log_rapsd, images, desc="log-RAPSD", progress=self.progress
        )

    def scores(self, images: np.ndarray) -> dict[str, float]:
        """Fréchet distances to the reference: in the feature space (`fd`), in pixels
        (`pixel_fd`) and in log-RAPSD space (`spectral_fd`)."""
        return {
            "fd": sd.metrics.fd(self._features(images), self.reference_features),
            "pixel_fd": sd.metrics.pixel_fd(images, self.images),
            "spectral_fd": sd.metrics.fd(self._log_rapsd(images), self.reference_spectra),
        }

    def noise(self, seed: int) -> np.ndarray:
        key = jax.random.key(10_000 + seed)
        return np.asarray(jax.random.normal(key, self.images.shape, jnp.float32))


def arrays(source, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of a source as arrays (a fixed random `limit` of them)."""
    index = np.arange(len(source))
    if limit is not None and len(source) > limit:
        index = np.sort(np.random.default_rng(0).choice(len(source), limit, replace=False))
    if hasattr(source, "images"):
        return np.asarray(source.images)[index], np.asarray(source.labels)[index]
    examples = [source[int(i)] for i in index]
    return np.stack([e["image"] for e in examples]), np.asarray([e["label"] for e in examples])
