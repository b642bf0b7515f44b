import pickle

import numpy as np
import pytest
from PIL import Image

from spectral_diffusion.data import (
    ArraySource,
    BuiltinPatches,
    cifar10,
    image_folder,
    npz_source,
    training_batches,
)


def test_builtin_patches_split_is_disjoint_and_deterministic():
    train = BuiltinPatches(
        16, "train", patches_per_image=8, context=64, names=["astronaut", "coffee"]
    )
    test = BuiltinPatches(
        16, "test", patches_per_image=4, context=64, names=["astronaut", "coffee"]
    )
    again = BuiltinPatches(
        16, "train", patches_per_image=8, context=64, names=["astronaut", "coffee"]
    )
    assert len(train) == 16 and len(test) == 8 and train.num_classes == 2
    np.testing.assert_array_equal(train.images, again.images)
    assert train[0]["image"].shape == (3, 16, 16) and train[0]["image"].dtype == np.float32
    assert set(train.labels.tolist()) == {0, 1}
    flat_train = {patch.tobytes() for patch in train.images}
    assert not any(patch.tobytes() in flat_train for patch in test.images)


def test_builtin_patches_default_context_keeps_the_field_of_view():
    names = ["astronaut"]  # square: its test region is a quarter of the width
    small = BuiltinPatches(32, "test", patches_per_image=2, names=names)
    large = BuiltinPatches(64, "test", patches_per_image=2, names=names)
    assert small.images.shape == (2, 3, 32, 32) and large.images.shape == (2, 3, 64, 64)
    # An explicit 128 px context has no room for a 64 px test patch.
    with pytest.raises(ValueError, match="smaller than `size` 64"):
        BuiltinPatches(64, "test", patches_per_image=2, context=128, names=names)


def test_training_batches_are_a_function_of_the_step():
    source = ArraySource(
        np.random.default_rng(0).uniform(-1, 1, (10, 3, 4, 4)).astype(np.float32), np.arange(10)
    )
    batches = training_batches(source, 4, seed=1)
    first, again = batches[7], training_batches(source, 4, seed=1)[7]
    np.testing.assert_array_equal(first["image"], again["image"])
    assert first["image"].shape == (4, 3, 4, 4) and first["label"].shape == (4,)
    other = training_batches(source, 4, seed=2)[7]
    assert not np.array_equal(first["label"], other["label"])
    with pytest.raises(ValueError, match="`batch_size`"):
        training_batches(source, 0)
    # Batches carry images and labels only (the step computes schedules from images).
    assert set(first) == {"image", "label"}


def test_npz_and_array_sources(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", images=images, labels=np.arange(5) % 2)
    source = npz_source(tmp_path / "data.npz")
    assert len(source) == 5 and source.num_classes == 2
    np.testing.assert_allclose(
        source[2]["image"], np.moveaxis(images[2], -1, 0) / 127.5 - 1, atol=1e-6
    )
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        npz_source(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", pixels=images)
    with pytest.raises(ValueError, match="has no array 'images'"):
        npz_source(tmp_path / "other.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        npz_source(tmp_path / "corrupt.npz")
    with pytest.raises(ValueError, match="non-empty 4-D"):
        ArraySource(np.zeros((0, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="within \\[-1, 1\\]"):
        ArraySource(np.full((2, 3, 4, 4), 3.0, np.float32))


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
                tmp_path / label / f"{i}.png"
            )
    source = image_folder(tmp_path, 8)
    assert len(source) == 4 and source.num_classes == 2 and source[3]["image"].shape == (3, 8, 8)
    assert source[0]["label"] == 0 and source[3]["label"] == 1
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "nowhere", 8)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images"):
        image_folder(empty, 8)
    (tmp_path / "cat" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="Cannot read image .*broken.png"):
        image_folder(tmp_path, 8)


def test_cifar10(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [1, 2, 3]}
        with open(tmp_path / name, "wb") as file:
            pickle.dump(batch, file)
    train, test = cifar10(tmp_path, "train"), cifar10(tmp_path, "test")
    assert len(train) == 15 and len(test) == 3 and train[0]["image"].shape == (3, 32, 32)
    (tmp_path / "test_batch").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        cifar10(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        cifar10(tmp_path / "nowhere", "train")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _example(features: dict) -> bytes:
    """A tf.train.Example, encoded by hand (wire format), as TFDS writes them."""
    entries = b""
    for name, value in features.items():
        if isinstance(value, bytes):
            feature = _field(1, _field(1, value))  # BytesList
        else:
            feature = _field(3, _field(1, b"".join(_varint(v) for v in value)))  # packed Int64List
        entries += _field(1, _field(1, name.encode()) + _field(2, feature))
    return _field(1, entries)


def test_tfds_array_record(tmp_path):
    import io

    from array_record.python.array_record_module import ArrayRecordWriter

    from spectral_diffusion.data import TFDSArrayRecord, parse_example

    rng = np.random.default_rng(0)
    pixels = []
    writer = ArrayRecordWriter(
        str(tmp_path / "imagenet2012-train.array_record-00000-of-00001"), "group_size:1"
    )
    for label in (3, 999):
        array = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        writer.write(
            _example({"image": buffer.getvalue(), "label": [label], "file_name": b"x.JPEG"})
        )
        pixels.append(array)
    writer.write(b"\x0a\x05garbage")
    writer.close()
    assert parse_example(_example({"label": [7, 300]}))["label"] == [7, 300]
    source = TFDSArrayRecord(tmp_path, "train", 8)
    assert len(source) == 3 and source.num_classes == 1000
    item = source[1]
    assert item["label"] == 999 and item["image"].shape == (3, 8, 8)
    from spectral_diffusion.data import center_crop, resize, to_model_range

    np.testing.assert_allclose(item["image"], to_model_range(resize(center_crop(pixels[1]), 8)))
    with pytest.raises(ValueError, match="Record 2 .* not a valid image example"):
        source[2]
    with pytest.raises(ValueError, match="no '\\*-validation.array_record-\\*' files"):
        TFDSArrayRecord(tmp_path, "validation", 8)
    with pytest.raises(FileNotFoundError):
        TFDSArrayRecord(tmp_path / "nowhere", "train", 8)
