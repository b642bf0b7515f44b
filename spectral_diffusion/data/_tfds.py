"""ImageNet (or any TFDS image data set) from a local TFDS ArrayRecord directory.

TFDS stores each example as a serialized `tf.train.Example`. Its wire format is
small and stable, so we decode it here rather than depend on TensorFlow: an
`Example` holds `Features`, a map from names to `Feature`s, each a list of bytes,
floats or int64s.
"""

import io
import os
import struct
from pathlib import Path

import grain
import numpy as np

from ._builtin import center_crop, resize, to_model_range


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of every field of a protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
            if len(value) != length:
                raise ValueError("truncated field")
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _feature(data: bytes) -> list:
    for kind, _, payload in _fields(data):
        if kind == 1:  # BytesList { repeated bytes value = 1; }
            return [v for _, _, v in _fields(payload)]
        if kind == 2:  # FloatList { repeated float value = 1 [packed]; }
            out = []
            for _, wire, v in _fields(payload):
                out += (
                    list(struct.unpack(f"<{len(v) // 4}f", v))
                    if wire == 2
                    else list(struct.unpack("<f", v))
                )
            return out
        if kind == 3:  # Int64List { repeated int64 value = 1 [packed]; }
            out = []
            for _, wire, v in _fields(payload):
                if wire == 2:
                    pos = 0
                    while pos < len(v):
                        number, pos = _varint(v, pos)
                        out.append(number - (1 << 64) if number >= 1 << 63 else number)
                else:
                    out.append(v - (1 << 64) if v >= 1 << 63 else v)
            return out
    return []


def parse_example(record: bytes) -> dict[str, list]:
    """Decode a serialized `tf.train.Example` into `{name: list of values}`."""
    out = {}
    for number, _, features in _fields(record):
        if number != 1:  # Example { Features features = 1; }
            continue
        for entry_number, _, entry in _fields(features):  # map<string, Feature> feature = 1
            if entry_number != 1:
                continue
            name, value = None, b""
            for field, _, payload in _fields(entry):
                if field == 1:
                    name = payload.decode()
                elif field == 2:
                    value = payload
            out[name] = _feature(value)
    return out


class TFDSArrayRecord:
    """Images and labels from a TFDS ArrayRecord directory (e.g. `imagenet2012/5.1.0`).

    Reads the files `*-{split}.array_record-*`, decodes each record lazily (nothing is
    loaded up front, so ImageNet-sized data works), centre-crops and resizes to
    `size` (antialiased), and returns the source's usual items.

    **Arguments:**

    - `directory`: the TFDS version directory holding the `.array_record-*` files.
    - `split`: `"train"`, `"validation"`, ...
    - `size`: output side in pixels.
    - `image_key`, `label_key`: feature names (TFDS image data sets use these).
    - `num_classes`: stored as an attribute for the trainer (ImageNet: 1000).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        size: int,
        *,
        image_key: str = "image",
        label_key: str = "label",
        num_classes: int = 1000,
    ):
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"No TFDS directory at {directory}.")
        paths = sorted(str(p) for p in directory.glob(f"*-{split}.array_record-*"))
        if not paths:
            raise ValueError(f"{directory} has no '*-{split}.array_record-*' files.")
        self.source = grain.sources.ArrayRecordDataSource(paths)
        self.size, self.image_key, self.label_key = size, image_key, label_key
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image, UnidentifiedImageError

        try:
            example = parse_example(self.source[index])
            encoded, label = example[self.image_key][0], example[self.label_key][0]
            with Image.open(io.BytesIO(encoded)) as image:
                array = np.asarray(image.convert("RGB"))
        except (ValueError, KeyError, IndexError, UnidentifiedImageError, OSError) as error:
            raise ValueError(
                f"Record {index} of the TFDS data is not a valid image example: {error}"
            ) from error
        image = to_model_range(resize(center_crop(array), self.size))
        return {"image": image, "label": np.int32(label)}
