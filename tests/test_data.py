import numpy as np
import pytest

from spectral_diffusion.data import (
    BUILTIN_PHOTOGRAPHS,
    builtin_images,
    center_crop,
    load_photograph,
    resize,
    to_model_range,
)


def test_every_builtin_photograph_loads_offline():
    for name in BUILTIN_PHOTOGRAPHS:
        photo = load_photograph(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert min(photo.shape[:2]) >= 256 and photo.std() > 5  # a real picture


def test_builtin_images_batch():
    images, names = builtin_images(32, names=["astronaut", "coins"])
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.float32
    assert names == ["astronaut", "coins"]
    assert images.min() >= -1 and images.max() <= 1
    # 8-bit requantised: values sit on the uint8 grid.
    np.testing.assert_allclose((images + 1) * 127.5, np.round((images + 1) * 127.5), atol=1e-4)


def test_builtin_images_skip_small_photographs_unless_upsampling():
    _, names = builtin_images(512, names=["astronaut", "coffee"])
    assert names == ["astronaut"]  # coffee is 400 px on its short side
    _, names = builtin_images(512, names=["astronaut", "coffee"], allow_upsampling=True)
    assert names == ["astronaut", "coffee"]
    with pytest.raises(ValueError, match="No photograph .* at least 4096 px"):
        builtin_images(4096, names=["coffee"])


def test_transforms():
    image = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    assert center_crop(image).shape == (5, 5, 3)
    np.testing.assert_array_equal(center_crop(image, 3), image[1:4, 2:5])
    assert resize(center_crop(image), 4).shape == (4, 4, 3)
    x = to_model_range(np.array([[[0, 255, 128]]], np.uint8))
    assert x.shape == (3, 1, 1)
    np.testing.assert_allclose(x.ravel(), [-1.0, 1.0, 128 / 127.5 - 1], atol=1e-6)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: load_photograph("lena"), "`name` must be one of"),
        (lambda: builtin_images(1), "`size` must be an integer >= 2"),
        (lambda: builtin_images(32, names=["nope"]), "`name` must be one of"),
        (lambda: center_crop(np.zeros((4, 6, 3)), 5), r"`size` must be in \[1, 4\]"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
