"""Presets of the paper-table modules (`table1`, `ablations`, `resolution`, `figures`).

One dataclass, one code path. `cpu` is the documented small copy of `paper`: the
same trainer, losses, schedules and samplers on the built-in photograph patches, with
the model, training steps and evaluation sample count sized for two CPU cores.
`smoke` is `cpu` shrunk until the whole suite runs in the test suite.
"""

import dataclasses
from dataclasses import dataclass

from spectral_diffusion.train import DataConfig, TrainConfig

from .train import PRESETS as TRAIN_PRESETS


@dataclass(frozen=True)
class SuiteConfig:
    #: The spectral method's training config at the base resolution; the baseline is
    #: the same config with the SiD2 interpolated cosine schedule.
    train: TrainConfig
    #: Held-out reference set; `patches_per_image` of a built-in source is the number
    #: of reference images per class (N = 15 x it).
    reference: DataConfig
    #: Table 1: sampler NFEs and training seeds.
    nfes: tuple[int, ...]
    seeds: int
    #: Images per jitted sampling call (keeps shapes static; the last batch is padded).
    sample_batch: int
    #: Features of the Fréchet distance: "classifier" (trained on the training split)
    #: or "inception" (FID; needs the weights file, see the Metrics page).
    features: str = "classifier"
    classifier_steps: int = 600
    #: Ablations run at this NFE (and the number of seeds given by `ablation_seeds`).
    ablation_nfe: int = 32
    ablation_seeds: int = 1
    #: Classifier-free guidance of the guidance-interval ablation: scale, and the
    #: logSNR interval where it applies.
    guidance_scale: float = 2.0
    guidance_interval: tuple[float, float] = (-3.0, 3.0)
    #: Resolution study: sizes, the NFEs evaluated there and the training steps (one
    #: set of hyperparameters for every size).
    resolutions: tuple[int, ...] = (32, 64)
    resolution_nfes: tuple[int, ...] = (16, 32)
    resolution_steps: int | None = None
    #: Figures: NFEs of the sample grids and images per grid.
    figure_nfes: tuple[int, ...] = (8, 32, 128)
    grid_size: int = 30


def with_config(config: TrainConfig, **changes) -> TrainConfig:
    """`config` with fields replaced; nested parts take dicts (`schedule=dict(kind=...)`)."""
    nested = ("data", "model", "schedule", "loss", "optim")
    replaced = {
        k: dataclasses.replace(getattr(config, k), **v) if k in nested else v
        for k, v in changes.items()
    }
    return dataclasses.replace(config, **replaced)


_CPU_TRAIN = with_config(
    TRAIN_PRESETS["cpu"],
    # Measured: ~3.7 steps/s on 2 cores, so each run takes ~4 minutes.
    steps=800,
    checkpoint_every=200,
    log_every=50,
)

_SMOKE_TRAIN = with_config(
    TRAIN_PRESETS["cpu"],
    data=dict(image_size=16, batch_size=8, patches_per_image=8),
    model=dict(
        kwargs=dict(
            stage_channels=(8, 16), num_res_blocks=1, dim=32, depth=1, num_heads=2, dropout=0.0
        )
    ),
    optim=dict(warmup_steps=2),
    schedule=dict(low=16, num_knots=16, mixture_components=1),
    steps=6,
    checkpoint_every=6,
    log_every=3,
)

PRESETS = {
    # About 50 minutes on two cores for table1 (6 runs of 800 steps, 300 reference
    # images, NFE 8-128); see the Reproduce page for every module's measured time.
    "cpu": SuiteConfig(
        train=_CPU_TRAIN,
        reference=DataConfig(source="builtin_patches", image_size=32, patches_per_image=20),
        nfes=(8, 16, 32, 64, 128),
        seeds=3,
        sample_batch=100,
        resolution_steps=400,
    ),
    # The paper's scale: ImageNet at 128 px (Table 1), FID on 50 000 samples with the
    # Inception-v3 FID weights, resolutions 128-512 with the 128 px hyperparameters.
    "paper": SuiteConfig(
        train=TRAIN_PRESETS["imagenet128"],
        reference=DataConfig(
            source="image_folder", path="imagenet/val", image_size=128, patches_per_image=50
        ),
        nfes=(8, 16, 32, 64, 128, 256),
        seeds=3,
        sample_batch=500,
        features="inception",
        ablation_seeds=1,
        resolutions=(128, 256, 512),
        resolution_nfes=(32, 64),
        grid_size=64,
    ),
    # The same code on a sliver: what the test suite runs (python -m reproduce.all
    # --preset smoke).
    "smoke": SuiteConfig(
        train=_SMOKE_TRAIN,
        reference=DataConfig(source="builtin_patches", image_size=16, patches_per_image=2),
        nfes=(4, 8),
        seeds=2,
        # 32: one padded batch, split over the test suite's 4 CPU devices.
        sample_batch=32,
        classifier_steps=20,
        ablation_nfe=4,
        resolutions=(16, 32),
        resolution_nfes=(4,),
        figure_nfes=(4,),
        grid_size=6,
    ),
}
