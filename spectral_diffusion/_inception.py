r"""Inception-v3 for FID, in Equinox, and a loader for the standard FID weights.

The network is the "FID Inception" of `pytorch-fid` (a port of the TensorFlow graph
TTUR used in the original FID paper): torchvision's Inception-v3 with three
differences in the pooling branches (average pools that exclude padding, and a max
pool in the last block) and a 1008-way classifier. The 2048-d output of the final
average pool is the FID feature.

Weights are read from a file the user supplies; nothing is downloaded. Supported:

- `pt_inception-2015-12-05-6726825d.pth`, the `pytorch-fid` weights (a PyTorch
  state dict, zip or legacy serialisation), read *without* PyTorch by a restricted
  unpickler that only accepts tensors, storages and ordered dicts;
- an `.npz` with the same keys (e.g. written once with `numpy.savez`).
"""

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray


# ---------------------------------------------------------------- layers


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(eqx.Module):
    """Convolution without bias, batch norm in inference mode (eps 1e-3), ReLU.
    Channels-first `(C, H, W)`, like the checkpoint."""

    weight: Float[Array, "out in kh kw"]
    bn_weight: Float[Array, " out"]
    bn_bias: Float[Array, " out"]
    bn_mean: Float[Array, " out"]
    bn_var: Float[Array, " out"]
    stride: tuple[int, int] = eqx.field(static=True)
    padding: tuple[int, int] = eqx.field(static=True)

    def __init__(self, cin, cout, kernel, stride=1, padding=0, *, key: PRNGKeyArray):
        kh, kw = _pair(kernel)
        # He initialisation, drawn with numpy: eager jax.random would compile one
        # kernel per distinct shape (~100 of them) just to build a template.
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
        scale = np.sqrt(2.0 / (cin * kh * kw))
        self.weight = jnp.asarray(scale * rng.standard_normal((cout, cin, kh, kw)), jnp.float32)
        ones, zeros = np.ones(cout, np.float32), np.zeros(cout, np.float32)
        self.bn_weight, self.bn_bias = jnp.asarray(ones), jnp.asarray(zeros)
        self.bn_mean, self.bn_var = jnp.asarray(zeros), jnp.asarray(ones)
        self.stride, self.padding = _pair(stride), _pair(padding)

    def __call__(self, x: Float[Array, "C H W"]) -> Float[Array, "D h w"]:
        y = jax.lax.conv_general_dilated(
            x[None],
            self.weight,
            self.stride,
            [(p, p) for p in self.padding],
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )[0]
        scale = self.bn_weight / jnp.sqrt(self.bn_var + 1e-3)
        shift = self.bn_bias - self.bn_mean * scale
        return jax.nn.relu(y * scale[:, None, None] + shift[:, None, None])


def _max_pool(x, size=3, stride=2, padding=0):
    pad = [(0, 0), (padding, padding), (padding, padding)]
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, size, size), (1, stride, stride), pad
    )


def _avg_pool(x, size=3, stride=1, padding=1):
    """Average pool that excludes the padding from each window's count."""
    pad = [(0, 0), (padding, padding), (padding, padding)]
    window, strides = (1, size, size), (1, stride, stride)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    count = jax.lax.reduce_window(jnp.ones_like(x[:1]), 0.0, jax.lax.add, window, strides, pad)
    return total / count


class _Block(eqx.Module):
    """Named branches (sequences of convolutions) whose outputs are concatenated."""

    convs: dict[str, BasicConv2d]

    def run(self, x, *names):
        for name in names:
            x = self.convs[name](x)
        return x


def _convs(specs: dict, key: PRNGKeyArray) -> dict[str, BasicConv2d]:
    keys = jax.random.split(key, len(specs))
    return {name: BasicConv2d(*args, key=k) for (name, args), k in zip(specs.items(), keys)}


class InceptionA(_Block):
    def __init__(self, cin, pool_features, *, key):
        self.convs = _convs(
            {
                "branch1x1": (cin, 64, 1),
                "branch5x5_1": (cin, 48, 1),
                "branch5x5_2": (48, 64, 5, 1, 2),
                "branch3x3dbl_1": (cin, 64, 1),
                "branch3x3dbl_2": (64, 96, 3, 1, 1),
                "branch3x3dbl_3": (96, 96, 3, 1, 1),
                "branch_pool": (cin, pool_features, 1),
            },
            key,
        )

    def __call__(self, x):
        return jnp.concatenate(
            [
                self.run(x, "branch1x1"),
                self.run(x, "branch5x5_1", "branch5x5_2"),
                self.run(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                self.run(_avg_pool(x), "branch_pool"),
            ]
        )


class InceptionB(_Block):
    def __init__(self, cin, *, key):
        self.convs = _convs(
            {
                "branch3x3": (cin, 384, 3, 2),
                "branch3x3dbl_1": (cin, 64, 1),
                "branch3x3dbl_2": (64, 96, 3, 1, 1),
                "branch3x3dbl_3": (96, 96, 3, 2),
            },
            key,
        )

    def __call__(self, x):
        return jnp.concatenate(
            [
                self.run(x, "branch3x3"),
                self.run(x, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
                _max_pool(x),
            ]
        )


class InceptionC(_Block):
    def __init__(self, cin, c7, *, key):
        row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
        self.convs = _convs(
            {
                "branch1x1": (cin, 192, 1),
                "branch7x7_1": (cin, c7, 1),
                "branch7x7_2": (c7, c7, *row),
                "branch7x7_3": (c7, 192, *col),
                "branch7x7dbl_1": (cin, c7, 1),
                "branch7x7dbl_2": (c7, c7, *col),
                "branch7x7dbl_3": (c7, c7, *row),
                "branch7x7dbl_4": (c7, c7, *col),
                "branch7x7dbl_5": (c7, 192, *row),
                "branch_pool": (cin, 192, 1),
            },
            key,
        )

    def __call__(self, x):
        dbl = [f"branch7x7dbl_{i}" for i in range(1, 6)]
        return jnp.concatenate(
            [
                self.run(x, "branch1x1"),
                self.run(x, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                self.run(x, *dbl),
                self.run(_avg_pool(x), "branch_pool"),
            ]
        )


class InceptionD(_Block):
    def __init__(self, cin, *, key):
        self.convs = _convs(
            {
                "branch3x3_1": (cin, 192, 1),
                "branch3x3_2": (192, 320, 3, 2),
                "branch7x7x3_1": (cin, 192, 1),
                "branch7x7x3_2": (192, 192, (1, 7), 1, (0, 3)),
                "branch7x7x3_3": (192, 192, (7, 1), 1, (3, 0)),
                "branch7x7x3_4": (192, 192, 3, 2),
            },
            key,
        )

    def __call__(self, x):
        seven = [f"branch7x7x3_{i}" for i in range(1, 5)]
        return jnp.concatenate(
            [self.run(x, "branch3x3_1", "branch3x3_2"), self.run(x, *seven), _max_pool(x)]
        )


class InceptionE(_Block):
    #: "avg" (FID's Mixed_7b: padding excluded) or "max" (FID's Mixed_7c).
    pool: str = eqx.field(static=True)

    def __init__(self, cin, pool: str, *, key):
        self.pool = pool
        self.convs = _convs(
            {
                "branch1x1": (cin, 320, 1),
                "branch3x3_1": (cin, 384, 1),
                "branch3x3_2a": (384, 384, (1, 3), 1, (0, 1)),
                "branch3x3_2b": (384, 384, (3, 1), 1, (1, 0)),
                "branch3x3dbl_1": (cin, 448, 1),
                "branch3x3dbl_2": (448, 384, 3, 1, 1),
                "branch3x3dbl_3a": (384, 384, (1, 3), 1, (0, 1)),
                "branch3x3dbl_3b": (384, 384, (3, 1), 1, (1, 0)),
                "branch_pool": (cin, 192, 1),
            },
            key,
        )

    def __call__(self, x):
        three = self.run(x, "branch3x3_1")
        dbl = self.run(x, "branch3x3dbl_1", "branch3x3dbl_2")
        pooled = _avg_pool(x) if self.pool == "avg" else _max_pool(x, 3, 1, 1)
        return jnp.concatenate(
            [
                self.run(x, "branch1x1"),
                self.run(three, "branch3x3_2a"),
                self.run(three, "branch3x3_2b"),
                self.run(dbl, "branch3x3dbl_3a"),
                self.run(dbl, "branch3x3dbl_3b"),
                self.run(pooled, "branch_pool"),
            ]
        )


# ---------------------------------------------------------------- the network

#: Input size of the network; images are resized to it (bilinear, like pytorch-fid).
INPUT_SIZE = 299
#: Classes of the FID weights' classifier head.
NUM_LOGITS = 1008


class FIDInception(eqx.Module):
    """The FID Inception-v3. `features` maps one `(3, H, W)` image in [-1, 1] to the
    2048-d pool feature; `__call__` gives the 1008 logits."""

    layers: dict[str, eqx.Module]
    fc: eqx.nn.Linear

    def __init__(self, *, key: PRNGKeyArray):
        keys = iter(jax.random.split(key, 20))
        stem = {
            "Conv2d_1a_3x3": (3, 32, 3, 2),
            "Conv2d_2a_3x3": (32, 32, 3),
            "Conv2d_2b_3x3": (32, 64, 3, 1, 1),
            "Conv2d_3b_1x1": (64, 80, 1),
            "Conv2d_4a_3x3": (80, 192, 3),
        }
        layers: dict[str, eqx.Module] = {
            name: BasicConv2d(*args, key=next(keys)) for name, args in stem.items()
        }
        layers |= {
            "Mixed_5b": InceptionA(192, 32, key=next(keys)),
            "Mixed_5c": InceptionA(256, 64, key=next(keys)),
            "Mixed_5d": InceptionA(288, 64, key=next(keys)),
            "Mixed_6a": InceptionB(288, key=next(keys)),
            "Mixed_6b": InceptionC(768, 128, key=next(keys)),
            "Mixed_6c": InceptionC(768, 160, key=next(keys)),
            "Mixed_6d": InceptionC(768, 160, key=next(keys)),
            "Mixed_6e": InceptionC(768, 192, key=next(keys)),
            "Mixed_7a": InceptionD(768, key=next(keys)),
            "Mixed_7b": InceptionE(1280, "avg", key=next(keys)),
            "Mixed_7c": InceptionE(2048, "max", key=next(keys)),
        }
        self.layers = layers
        self.fc = eqx.nn.Linear(2048, NUM_LOGITS, key=next(keys))

    def features(self, image: Float[Array, "3 H W"]) -> Float[Array, " 2048"]:
        x = jax.image.resize(image, (3, INPUT_SIZE, INPUT_SIZE), method="bilinear", antialias=False)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = self.layers[name](x)
        x = _max_pool(x)
        x = self.layers["Conv2d_4a_3x3"](self.layers["Conv2d_3b_1x1"](x))
        x = _max_pool(x)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = self.layers[f"Mixed_{name}"](x)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, image: Float[Array, "3 H W"]) -> Float[Array, " 1008"]:
        return self.fc(self.features(image))


# ---------------------------------------------------------------- state dicts

_BN = {
    "bn_weight": "bn.weight",
    "bn_bias": "bn.bias",
    "bn_mean": "bn.running_mean",
    "bn_var": "bn.running_var",
}


def _conv_paths(model: FIDInception) -> list[tuple[str, Callable]]:
    """(checkpoint key, getter of the model's array) for every parameter."""
    out = []
    for layer_name, layer in model.layers.items():
        convs = {"": layer} if isinstance(layer, BasicConv2d) else layer.convs
        for conv_name in convs:
            prefix = ".".join(p for p in (layer_name, conv_name) if p)

            def conv(m, layer_name=layer_name, conv_name=conv_name):
                layer = m.layers[layer_name]
                return layer if not conv_name else layer.convs[conv_name]

            out.append((f"{prefix}.conv.weight", lambda m, c=conv: c(m).weight))
            for field, key in _BN.items():
                out.append((f"{prefix}.{key}", lambda m, c=conv, f=field: getattr(c(m), f)))
    out.append(("fc.weight", lambda m: m.fc.weight))
    out.append(("fc.bias", lambda m: m.fc.bias))
    return out


def state_dict(model: FIDInception) -> dict[str, np.ndarray]:
    """The model's parameters under the checkpoint's (torchvision) names."""
    return {key: np.asarray(get(model)) for key, get in _conv_paths(model)}


def from_state_dict(
    weights: dict[str, ArrayLike], *, key: PRNGKeyArray | None = None
) -> FIDInception:
    """An FID Inception with every parameter taken from `weights`.

    **Raises:**

    `ValueError` naming the first missing key or wrong shape.
    """
    template = FIDInception(key=jax.random.key(0) if key is None else key)
    paths = _conv_paths(template)
    values = []
    for name, get in paths:
        if name not in weights:
            raise ValueError(f"The FID weights have no {name!r} (is this the FID Inception file?).")
        expected = get(template).shape
        value = np.asarray(weights[name], np.float32)
        if value.shape != expected:
            raise ValueError(f"FID weight {name!r} has shape {value.shape}, expected {expected}.")
        values.append(jnp.asarray(value))
    getters = [get for _, get in paths]
    return eqx.tree_at(lambda m: [get(m) for get in getters], template, values)


# ---------------------------------------------------------------- PyTorch files without PyTorch

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *args):
    # A view, not a copy: the legacy format fills the storages after the pickle.
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )


def _rebuild_parameter(data, requires_grad, backward_hooks, *args):
    return data


class _Unpickler(pickle.Unpickler):
    """Accepts only what a tensor state dict contains; anything else is refused."""

    def __init__(self, file, load_storage: Callable):
        super().__init__(file)
        self.load_storage = load_storage

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"Refusing to load {module}.{name}: only tensor state dicts are supported."
        )

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, *_ = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"Unknown persistent id {kind!r}.")
        return self.load_storage(str(key), storage_type.dtype, int(numel))


def _load_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl")), None)
        if pkl is None:
            raise ValueError(f"{path} is a zip file but not a PyTorch checkpoint.")
        root = pkl[: -len("data.pkl")]
        cache = {}

        def load_storage(key, dtype, numel):
            if key not in cache:
                raw = archive.read(f"{root}data/{key}")
                cache[key] = np.frombuffer(raw, dtype=dtype, count=numel).copy()
            return cache[key]

        return _Unpickler(io.BytesIO(archive.read(pkl)), load_storage).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(path: Path) -> dict:
    """The pre-1.6 PyTorch format: magic, protocol, system info, the object pickle,
    the storage keys, then each storage as an int64 element count and raw bytes."""
    with open(path, "rb") as f:
        plain = _HeaderUnpickler(f)
        if plain.load() != _LEGACY_MAGIC:
            raise ValueError(f"{path} is not a PyTorch checkpoint (bad magic number).")
        plain.load()  # protocol version
        plain.load()  # system info
        pending = {}

        def load_storage(key, dtype, numel):
            if key not in pending:
                pending[key] = np.empty(numel, dtype)
            return pending[key]

        result = _Unpickler(f, load_storage).load()
        keys = _Unpickler(f, load_storage).load()
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            storage = pending[str(key)]
            data = f.read(numel * storage.dtype.itemsize)
            storage[:] = np.frombuffer(data, storage.dtype, count=numel)
    return result


class _HeaderUnpickler(pickle.Unpickler):
    """The legacy header pickles are plain numbers and dicts: no classes at all."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"Unexpected {module}.{name} in a checkpoint header.")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays by name from a PyTorch state-dict file (zip or legacy format, read without
    PyTorch and without executing any code from the file) or an `.npz`.

    **Raises:**

    `FileNotFoundError` for a missing file; `ValueError` for a file that is none of
    these formats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                is_npz = all(n.endswith(".npy") for n in archive.namelist())
            if is_npz:
                with np.load(path) as data:
                    return {k: data[k] for k in data.files}
            result = _load_zip(path)
        else:
            result = _load_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as error:
        raise ValueError(f"Could not read {path} as a PyTorch state dict: {error}") from error
    if not isinstance(result, dict):
        raise ValueError(f"{path} holds a {type(result).__name__}, not a state dict.")
    return {str(k): np.array(v) for k, v in result.items()}  # copies: own memory


#: Environment variable naming the FID weights file when no path is passed.
WEIGHTS_ENV = "SPECTRAL_DIFFUSION_FID_WEIGHTS"


def load_fid_inception(path: str | os.PathLike | None = None) -> FIDInception:
    """The FID Inception-v3 with the standard FID weights from a local file.

    The file is `pt_inception-2015-12-05-6726825d.pth` from the `pytorch-fid` releases
    (github.com/mseitzer/pytorch-fid, release "fid_weights_v0.1"), ~95 MB, or an `.npz`
    with the same keys. It is never downloaded: fetch it once on a machine with
    network access and pass its path (or set `$SPECTRAL_DIFFUSION_FID_WEIGHTS`).

    **Raises:**

    `ValueError` when no path is given and the variable is unset, or the file lacks a
    parameter or has one of the wrong shape; `FileNotFoundError` for a missing file.
    """
    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise ValueError(
            f"FID needs the Inception weights file: pass its path or set ${WEIGHTS_ENV} "
            "(see the Metrics page for where to get it)."
        )
    return from_state_dict(load_state_dict(path))
