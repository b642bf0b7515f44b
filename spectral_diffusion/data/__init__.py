"""Data: the built-in natural photographs and image transforms."""

from ._builtin import (
    BUILTIN_PHOTOGRAPHS as BUILTIN_PHOTOGRAPHS,
    builtin_images as builtin_images,
    center_crop as center_crop,
    load_photograph as load_photograph,
    resize as resize,
    to_model_range as to_model_range,
)
