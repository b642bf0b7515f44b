"""The built-in natural photographs shipped with scikit-image and scikit-learn.

Nothing is downloaded: these images are inside the installed packages (the `data`
extra), which makes them the real-image data of the CPU presets and the tests.
"""

import functools
from collections.abc import Callable, Sequence

import numpy as np
from jaxtyping import Float, UInt8

from .._checks import as_integer
from .._custom_types import IntScalar


def _require(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:  # pragma: no cover - exercised only without extras
        raise ImportError(
            f"The built-in photographs need `{module}`; install the data extra: "
            "pip install 'spectral_diffusion[data]'."
        ) from error


def _skimage(name: str) -> Callable[[], np.ndarray]:
    return lambda: getattr(_require("skimage.data"), name)()


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        sample = _require("sklearn.datasets").load_sample_images()
        index = [path.rsplit("/", 1)[-1] for path in sample.filenames].index(filename)
        return sample.images[index]

    return load


#: Natural photographs (no synthetic test patterns, no text, no binary masks).
#: Greyscale ones are replicated to three channels.
_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "camera": _skimage("camera"),
    "moon": _skimage("moon"),
    "coins": _skimage("coins"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}

#: Names of the built-in photographs, in a fixed order (their class labels).
BUILTIN_PHOTOGRAPHS: tuple[str, ...] = tuple(_LOADERS)


@functools.cache
def load_photograph(name: str) -> UInt8[np.ndarray, "H W 3"]:
    """One built-in photograph as an RGB `uint8` array of shape `(H, W, 3)`.

    **Raises:**

    `ValueError` for an unknown name (the message lists the known ones).
    """
    if name not in _LOADERS:
        raise ValueError(f"`name` must be one of {list(BUILTIN_PHOTOGRAPHS)}, got {name!r}.")
    image = np.asarray(_LOADERS[name]())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    image.setflags(write=False)
    return image


def center_crop(image: np.ndarray, size: int | None = None) -> np.ndarray:
    """The central `size x size` square of an `(H, W, ...)` image (default: the
    largest square).

    **Raises:**

    `ValueError` if `size` exceeds the short side.
    """
    height, width = image.shape[:2]
    size = min(height, width) if size is None else size
    if not 0 < size <= min(height, width):
        raise ValueError(f"`size` must be in [1, {min(height, width)}], got {size!r}.")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def resize(image: UInt8[np.ndarray, "H W 3"], size: int) -> UInt8[np.ndarray, "S S 3"]:
    """Antialiased resize of a square `uint8` image to `size x size`, requantised to
    8 bits as a stored data set would be (so the 8-bit quantisation floor of the
    bounds applies)."""
    transform = _require("skimage.transform")
    out = transform.resize(image, (size, size), order=1, anti_aliasing=True)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def to_model_range(image: UInt8[np.ndarray, "H W C"]) -> Float[np.ndarray, "C H W"]:
    """`uint8` `(H, W, C)` to float32 `(C, H, W)` in [-1, 1]."""
    return (np.moveaxis(np.asarray(image, np.float32), -1, 0) / 127.5 - 1.0).astype(np.float32)


def builtin_images(
    size: IntScalar, names: Sequence[str] | None = None, *, allow_upsampling: bool = False
) -> tuple[Float[np.ndarray, "N 3 size size"], list[str]]:
    """Built-in photographs as a batch of model inputs: centre square crop,
    antialiased resize to `size`, 8-bit requantisation, `(3, size, size)` in [-1, 1].

    **Arguments:**

    - `size`: output side in pixels (at least 2).
    - `names`: which photographs (default: all of `BUILTIN_PHOTOGRAPHS`).
    - `allow_upsampling`: include photographs whose short side is below `size`.
        Off by default: upsampling invents no fine detail, so their spectra (and
        hence their bounds) would describe the resampling filter, not the image.

    **Returns:**

    `(images, names)`: the batch and the names of the photographs it holds.

    **Raises:**

    `ValueError` for `size < 2`, an unknown name, or when no photograph is large
    enough.
    """
    size = as_integer(size, "size", 2)
    names = list(BUILTIN_PHOTOGRAPHS if names is None else names)
    kept, images = [], []
    for name in names:
        photo = load_photograph(name)
        if min(photo.shape[:2]) < size and not allow_upsampling:
            continue
        kept.append(name)
        images.append(to_model_range(resize(center_crop(photo), size)))
    if not images:
        raise ValueError(
            f"No photograph among {names} has a short side of at least {size} px; pass "
            "`allow_upsampling=True` to upsample."
        )
    return np.stack(images), kept
