"""Typed training configuration. Strings name choices only here, at the config edge;
`build_*` resolves them once into objects."""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .._bounds import EPS_HI, EPS_LO


@dataclass(frozen=True)
class DataConfig:
    #: "builtin_patches", "npz", "image_folder", "cifar10" or "tfds" (ArrayRecord).
    source: str = "builtin_patches"
    path: str | None = None
    image_size: int = 32
    batch_size: int = 32
    patches_per_image: int = 256
    flip: bool = True


@dataclass(frozen=True)
class ModelConfig:
    #: "unet" or "uvit".
    architecture: str = "uvit"
    #: "eps", "v" or "x".
    parameterisation: str = "v"
    #: Keyword arguments of spectral_diffusion.UNet / UViT (sizes).
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleConfig:
    #: "spectral" (per instance), "global_spectral", "interpolated_cosine", "cosine".
    kind: str = "spectral"
    #: For spectral kinds: "power", "frequency" or "mixed".
    spectral_kind: str = "mixed"
    weight: float = 0.5
    num_knots: int = 64
    #: Bound tolerances of the spectral kinds (SPEC §2; the library defaults).
    eps_hi: float = EPS_HI
    eps_lo: float = EPS_LO
    #: Low end of the interpolated cosine (SiD2).
    low: int = 32
    #: Components per class of the schedule mixture fit for generation.
    mixture_components: int = 4


@dataclass(frozen=True)
class LossConfig:
    #: "weighted_eps" (Kingma-Gao sigmoid weighting), "eps" or "v".
    kind: str = "weighted_eps"
    bias: float = 0.0
    multiscale_base: int | None = None
    #: How training draws noise levels (SPEC §5): "schedule" (t ~ U[0, 1] on each
    #: example's own schedule), "truncated" (the baseline schedule's density at this
    #: resolution, restricted to each example's range: the interpolated cosine with
    #: `schedule.low`, the cosine over [-15, 15] at 32 px) or "auto" ("truncated" for
    #: the spectral kinds, "schedule" for the fixed ones).
    proposal: str = "auto"


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: EMA decay after warm-up; at step t the decay is min(ema_decay, (1+t)/(10+t)).
    ema_decay: float = 0.999
    b2: float = 0.99


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    steps: int = 2000
    label_dropout: float = 0.1
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    #: Also keep every checkpoint whose step is a multiple of this (for learning
    #: curves: `restore(workdir, step=...)`); None keeps only the latest ones.
    keep_every: int | None = None
    log_every: int = 20
    seed: int = 0
    #: Call jax.distributed.initialize() (multi-host); single host otherwise.
    distributed: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        parts = {
            "data": DataConfig,
            "model": ModelConfig,
            "schedule": ScheduleConfig,
            "loss": LossConfig,
            "optim": OptimConfig,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"Unknown config fields: {sorted(unknown)}.")
        return cls(**{k: parts[k](**v) if k in parts else v for k, v in raw.items()})
