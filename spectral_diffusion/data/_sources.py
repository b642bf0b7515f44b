"""Random-access data sources for grain, and the training pipeline built on them.

A source is `len(source)` examples, each `{"image": float32 (C, H, W) in [-1, 1],
"label": int32}`; grain maps, shuffles and batches it. Every source checks its input
when it is built and names the path or argument that is wrong.
"""

import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path

import grain
import numpy as np

from ._builtin import BUILTIN_PHOTOGRAPHS, center_crop, load_photograph, resize, to_model_range


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class BuiltinPatches:
    """Random crops of the built-in photographs; label = source photograph.

    Each photograph is resized (antialiased, 8-bit requantised) so its short side is
    `context` pixels, then cropped at `size` px. The split is spatial and therefore
    disjoint: train crops come from the left `train_fraction` of each photograph, test
    crops from the rest, so no test pixel was seen in training. Crop positions are a
    fixed function of `seed`, and distinct within a photograph until its region runs
    out of positions.

    **Arguments:**

    - `size`: patch side (e.g. 32 or 64).
    - `split`: `"train"` or `"test"`.
    - `patches_per_image`: crops per photograph in this split.
    - `context`: short side the photographs are resized to before cropping; default
        `max(128, 4 * size)`, so a patch always covers at most a quarter of the short
        side (the same field of view at 32, 64, 128 px: a resolution study sees the
        same content at more pixels) and the test region (the right 25%) of a square
        photograph still holds a patch.
    - `names`: photographs to use (default all; labels follow this order).
    """

    def __init__(
        self,
        size: int = 32,
        split: str = "train",
        *,
        patches_per_image: int = 256,
        context: int | None = None,
        train_fraction: float = 0.75,
        names: Sequence[str] | None = None,
        seed: int = 0,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
        context = max(128, 4 * size) if context is None else context
        if not 2 <= size <= context:
            raise ValueError(f"`size` must be in [2, context={context}], got {size!r}.")
        if patches_per_image < 1:
            raise ValueError(f"`patches_per_image` must be >= 1, got {patches_per_image!r}.")
        self.names = list(BUILTIN_PHOTOGRAPHS if names is None else names)
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        self.images, self.labels = [], []
        for label, name in enumerate(self.names):
            photo = load_photograph(name)
            height, width = photo.shape[:2]
            scale = context / min(height, width)
            photo = _resize_rgb(photo, round(height * scale), round(width * scale))
            cut = int(photo.shape[1] * train_fraction)
            region = photo[:, :cut] if split == "train" else photo[:, cut:]
            if region.shape[0] < size or region.shape[1] < size:
                raise ValueError(
                    f"The {split} region of {name!r} ({region.shape[:2]}) is smaller than "
                    f"`size` {size}; raise `context` or change `train_fraction`."
                )
            rows, columns = region.shape[0] - size + 1, region.shape[1] - size + 1
            # Every position once before any repeats (a held-out set of repeated crops
            # would hold less than its size says).
            total = rows * columns
            extra = rng.choice(total, max(0, patches_per_image - total))
            positions = np.concatenate([rng.permutation(total), extra])[:patches_per_image]
            for y, x in zip(positions // columns, positions % columns):
                self.images.append(to_model_range(region[y : y + size, x : x + size]))
                self.labels.append(label)
        self.images = np.stack(self.images)
        self.labels = np.asarray(self.labels, np.int32)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index]}


def _resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from skimage.transform import resize as sk_resize

    out = sk_resize(image, (height, width), order=1, anti_aliasing=True)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


class ArraySource:
    """Images already in memory: uint8 `(N, H, W, C)` or float `(N, C, H, W)` in [-1, 1]."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray | None = None, *, name: str = "images"
    ):
        images = np.asarray(images)
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"`{name}` must be a non-empty 4-D array, got shape {images.shape}.")
        if images.dtype == np.uint8:
            images = np.stack([to_model_range(image) for image in images])
        elif not np.issubdtype(images.dtype, np.floating):
            raise ValueError(
                f"`{name}` must be uint8 (N, H, W, C) or float (N, C, H, W), got {images.dtype}."
            )
        if not np.all(np.isfinite(images)) or np.abs(images).max() > 1.0 + 1e-3:
            raise ValueError(f"`{name}` must be finite and within [-1, 1].")
        labels = np.zeros(len(images), np.int32) if labels is None else np.asarray(labels, np.int32)
        if labels.shape != (len(images),):
            raise ValueError(
                f"labels of `{name}` must have shape ({len(images)},), got {labels.shape}."
            )
        self.images, self.labels = images.astype(np.float32), labels
        self.num_classes = int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index]}


def npz_source(
    path: str | os.PathLike, images_key: str = "images", labels_key: str = "labels"
) -> ArraySource:
    """Images (and optional labels) from a `.npz` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .npz file at {path}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .npz file (not a zip archive).")
    try:
        data = np.load(path)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} is not a readable .npz file: {error}") from error
    with data:
        if images_key not in data:
            raise ValueError(f"{path} has no array {images_key!r} (it has {list(data)}).")
        images = data[images_key]
        labels = data[labels_key] if labels_key in data else None
    return ArraySource(images, labels, name=str(path))


def image_folder(root: str | os.PathLike, size: int) -> ArraySource:
    """An ImageFolder tree (one sub-folder per class, sorted names = labels), each image
    centre-cropped and resized (antialiased) to `size`. ImageNet's `train/` and `val/`
    folders in this layout load the same way.

    Loads everything into memory: for data sets larger than RAM, write them to
    `.npz` shards or stream them with your own grain source of the same item format.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No ImageFolder directory at {root}.")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-folders.")
    images, labels = [], []
    for label, folder in enumerate(classes):
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    array = np.asarray(image.convert("RGB"))
            except (UnidentifiedImageError, OSError) as error:
                raise ValueError(f"Cannot read image {file}: {error}") from error
            images.append(resize(center_crop(array), size))
            labels.append(label)
    if not images:
        raise ValueError(f"{root} has class folders but no images ({sorted(_IMAGE_SUFFIXES)}).")
    return ArraySource(np.stack(images), np.asarray(labels), name=str(root))


def cifar10(root: str | os.PathLike, split: str = "train") -> ArraySource:
    """CIFAR-10 from the python batches (`data_batch_1..5`, `test_batch`) in `root`."""
    root = Path(root)
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    images, labels = [], []
    for name in files:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"Missing CIFAR-10 batch {path} (expected the python version).")
        try:
            with open(path, "rb") as file:
                batch = pickle.load(file, encoding="bytes")
            data = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
            raise ValueError(f"{path} is not a CIFAR-10 python batch: {error}") from error
        images.append(data.transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch[b"labels"]))
    return ArraySource(np.concatenate(images), np.concatenate(labels), name=str(root))


def _flip(example: dict, rng: np.random.Generator) -> dict:
    if rng.random() < 0.5:
        example = {**example, "image": example["image"][..., ::-1].copy()}
    return example


def training_batches(
    source,
    batch_size: int,
    *,
    seed: int = 0,
    flip: bool = True,
) -> grain.MapDataset:
    """Shuffled, repeated, (randomly flipped) batches: `dataset[step]` is the batch of
    training step `step`, a fixed function of `seed` — which makes resuming exact
    without any iterator state. Batches carry images and labels only: the train step
    computes each batch's schedules from its images
    ([`spectral_diffusion.train.Recipe.schedule_for`][]).
    """
    if len(source) == 0:
        raise ValueError("The data source is empty.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size!r}.")
    dataset = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
    if flip:
        dataset = dataset.random_map(_flip, seed=seed)
    return dataset.batch(batch_size, drop_remainder=True)
