"""Training: typed config, data-parallel trainer, checkpoints and resume."""

from ._config import (
    DataConfig as DataConfig,
    LossConfig as LossConfig,
    ModelConfig as ModelConfig,
    OptimConfig as OptimConfig,
    ScheduleConfig as ScheduleConfig,
    TrainConfig as TrainConfig,
)
from ._presets import PRESETS as PRESETS
from ._trainer import (
    MIXTURE_FILE as MIXTURE_FILE,
    TrainState as TrainState,
    build_denoiser as build_denoiser,
    build_source as build_source,
    dataset_rapsd as dataset_rapsd,
    fit_schedule_mixture as fit_schedule_mixture,
    init_state as init_state,
    restore as restore,
    train as train,
)
