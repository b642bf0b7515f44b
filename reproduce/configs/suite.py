"""Presets of the paper-table modules (`table1`, `ablations`, `resolution`, `figures`).

One dataclass, one code path. `cpu` is the documented small copy of `paper`: the
same trainer, losses, schedules and samplers on the built-in photograph patches, with
the model, training steps and evaluation sample count sized for two CPU cores.
`smoke` is `cpu` shrunk until the whole suite runs in the test suite.
"""

import dataclasses
from dataclasses import dataclass

from spectral_diffusion.train import PRESETS as TRAIN_PRESETS, DataConfig, TrainConfig


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
    #: Table 1 scores the claims' NFEs (32, 64) on the whole reference set for every
    #: seed; the other NFEs, and the arms no claim rests on, on a class-balanced subset
    #: of `reduced_n` images for the first `reduced_seeds` seeds (None: all of them).
    reduced_n: int | None = None
    reduced_seeds: int | None = None
    #: Per-logSNR diagnostics: the logSNR grid, the held-out images of the final
    #: curves and of the learning curves at kept checkpoints (None: the whole
    #: reference set).
    diagnostic_logsnrs: tuple[float, ...] = tuple(float(v) for v in range(-10, 9))
    diagnostic_n: int | None = None
    curve_n: int | None = None
    #: Training batches the noise-level statistics (effective batch size) cover.
    statistics_batches: int = 300


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
    # 2000 steps (the held-out denoising error's learning curve, on the Reproduce page,
    # flattens by then); every 500th checkpoint is kept for that curve.
    steps=2000,
    checkpoint_every=250,
    keep_every=500,
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
    checkpoint_every=3,
    keep_every=3,
    log_every=3,
)

# The accelerator preset: the cpu preset's code and data at 64 px, with a U-ViT of
# 8 transformer blocks at width 256 and 3000 steps of batch 128, meant to finish in
# about 25 minutes on one H100 (an estimate, not measured: no accelerator was
# available when it was written; see the Reproduce page).
_GPU_TRAIN = with_config(
    TRAIN_PRESETS["cpu"],
    data=dict(image_size=64, batch_size=128, patches_per_image=1024),
    model=dict(
        kwargs=dict(
            stage_channels=(32, 64, 128, 256),
            num_res_blocks=1,
            dim=256,
            depth=8,
            num_heads=4,
            dropout=0.0,
        )
    ),
    optim=dict(learning_rate=5e-4, warmup_steps=250),
    steps=3000,
    checkpoint_every=500,
    keep_every=1000,
    log_every=100,
)

PRESETS = {
    # Table 1 in about 2.5 hours on two cores: 9 runs of 2000 steps (3 arms x 3
    # seeds), 1500 reference images at NFE 32 and 64, 300 elsewhere (seed 0); see the
    # Reproduce page for every module's measured time.
    "cpu": SuiteConfig(
        train=_CPU_TRAIN,
        reference=DataConfig(source="builtin_patches", image_size=32, patches_per_image=100),
        nfes=(8, 16, 32, 64, 128),
        seeds=3,
        sample_batch=100,
        resolution_steps=400,
        reduced_n=300,
        reduced_seeds=1,
        diagnostic_n=300,
        curve_n=150,
    ),
    # One H100: the same suite at 64 px with a larger U-ViT and N = 5010.
    "gpu": SuiteConfig(
        train=_GPU_TRAIN,
        reference=DataConfig(source="builtin_patches", image_size=64, patches_per_image=334),
        nfes=(8, 16, 32, 64, 128),
        seeds=3,
        sample_batch=334,
        classifier_steps=2000,
        resolutions=(64, 128),
        resolution_steps=3000,
        reduced_n=1005,
        diagnostic_n=1005,
        curve_n=300,
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
        diagnostic_n=10_000,
        curve_n=2000,
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
        reduced_n=15,
        reduced_seeds=1,
        diagnostic_logsnrs=(-6.0, 0.0, 6.0),
        diagnostic_n=15,
        curve_n=15,
        statistics_batches=20,
    ),
}


def shrink(suite: SuiteConfig, smoke: SuiteConfig) -> SuiteConfig:
    """`suite`'s code path at `smoke`'s sizes: its network (same kind and number of
    stages, smoke widths), schedule, loss and features, with the smoke preset's data,
    steps, sample counts and NFEs (how the tests exercise presets too large to run
    there)."""
    kwargs = dict(suite.train.model.kwargs)
    stages = len(kwargs.get("stage_channels", kwargs.get("channel_mults", (1, 2))))
    kwargs.update(smoke.train.model.kwargs)
    if "stage_channels" in kwargs:
        kwargs["stage_channels"] = (8,) * stages
    train = with_config(
        suite.train,
        data=dataclasses.asdict(smoke.train.data),
        model=dict(kwargs=kwargs),
        optim=dataclasses.asdict(smoke.train.optim),
        schedule=dict(low=smoke.train.schedule.low, num_knots=smoke.train.schedule.num_knots),
        steps=smoke.train.steps,
        checkpoint_every=smoke.train.checkpoint_every,
        keep_every=smoke.train.keep_every,
        log_every=smoke.train.log_every,
    )
    sizes = {
        f.name: getattr(smoke, f.name)
        for f in dataclasses.fields(SuiteConfig)
        if f.name not in ("train", "features")
    }
    return dataclasses.replace(suite, train=train, **sizes)
