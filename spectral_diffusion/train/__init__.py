"""Training: typed config, the recipe a config describes, checkpoints and the
data-parallel loop."""

from .._compile import keep_host_memory as keep_host_memory
from ._checkpoints import (
    TrainState as TrainState,
    init_state as init_state,
    load_mixture as load_mixture,
    restore as restore,
)
from ._config import (
    DataConfig as DataConfig,
    LossConfig as LossConfig,
    ModelConfig as ModelConfig,
    OptimConfig as OptimConfig,
    ScheduleConfig as ScheduleConfig,
    TrainConfig as TrainConfig,
)
from ._presets import PRESETS as PRESETS
from ._recipe import (
    Recipe as Recipe,
    baseline_schedule as baseline_schedule,
    data_source as data_source,
    dataset_rapsd as dataset_rapsd,
    fit_mixture as fit_mixture,
    num_classes_of as num_classes_of,
)
from ._trainer import (
    TrainingDiverged as TrainingDiverged,
    ema_decay as ema_decay,
    make_train_step as make_train_step,
    train as train,
)
