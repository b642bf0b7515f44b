"""Data: the built-in natural photographs, data sources for grain, image transforms."""

from ._builtin import (
    BUILTIN_PHOTOGRAPHS as BUILTIN_PHOTOGRAPHS,
    builtin_images as builtin_images,
    center_crop as center_crop,
    load_photograph as load_photograph,
    resize as resize,
    to_model_range as to_model_range,
)
from ._sharding import (
    batch_sharding as batch_sharding,
    data_mesh as data_mesh,
    replicated as replicated,
)
from ._sources import (
    ArraySource as ArraySource,
    BuiltinPatches as BuiltinPatches,
    cifar10 as cifar10,
    image_folder as image_folder,
    npz_source as npz_source,
    training_batches as training_batches,
)
from ._tfds import TFDSArrayRecord as TFDSArrayRecord, parse_example as parse_example
