"""Training presets: one code path, sizes from the CPU to ImageNet 512.

`cpu` is a documented, smaller copy of the ImageNet recipes (same trainer, same
losses, same schedules), sized so useful training fits in about ten minutes on two
cores. The ImageNet presets follow SiD2 ("Simpler Diffusion", Hoogeboom et al. 2025)
where its recipe is public: U-ViT, v-prediction, sigmoid loss weighting with a
resolution-dependent bias, interpolated cosine baseline schedule (32 -> resolution),
AdamW with warm-up and cosine decay, EMA, large batches. Sizes the paper does not
state are our choices and are marked.

They live in the library (not in `reproduce/`) so that
`python -m spectral_diffusion.train --config cpu` works from an installed wheel, run
from any directory; the Reproduce suite builds its experiments from the same objects.
"""

from ._config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
)


def _imagenet(resolution: int, bias: float, stages: tuple[int, ...]) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(
            source="image_folder", path="imagenet/train", image_size=resolution, batch_size=2048
        ),
        model=ModelConfig(
            architecture="uvit",
            parameterisation="v",
            # Transformer width/depth: our choice of a ~1B-parameter U-ViT.
            kwargs=dict(
                stage_channels=stages,
                num_res_blocks=2,
                dim=1536,
                depth=24,
                num_heads=16,
                dropout=0.1,
            ),
        ),
        schedule=ScheduleConfig(kind="spectral", spectral_kind="mixed"),
        loss=LossConfig(kind="weighted_eps", bias=bias),
        optim=OptimConfig(
            learning_rate=1e-4,
            warmup_steps=10_000,
            weight_decay=0.0,
            grad_clip=1.0,
            ema_decay=0.9999,
            b2=0.99,
        ),
        steps=500_000,
        checkpoint_every=5_000,
        keep_checkpoints=3,
        log_every=100,
    )


#: Training presets by name: `cpu`, `imagenet128`, `imagenet256`, `imagenet512`.
PRESETS: dict[str, TrainConfig] = {
    # Measured on the 2-core CI machine (batch 32 at 32 px, one train step), when the
    # preset was chosen: this 1.3M-parameter U-ViT 113 img/s; 2-stage (32, 64) U-ViT
    # 38; a 1.4M U-Net with base 32, mults (1, 2, 2) 65. Convolutions at full
    # resolution dominate on CPU, so the preset pushes the work into the transformer on
    # 8 x 8 tokens. After the speed work (issue 13) benchmarks/bench_train.py measures
    # 203-213 img/s at 2 threads (three runs), and its 2000 steps took 379 s from the
    # command line (the Training page's presets table).
    "cpu": TrainConfig(
        data=DataConfig(
            source="builtin_patches", image_size=32, batch_size=32, patches_per_image=256
        ),
        model=ModelConfig(
            architecture="uvit",
            parameterisation="v",
            kwargs=dict(
                stage_channels=(16, 32, 64),
                num_res_blocks=1,
                dim=128,
                depth=4,
                num_heads=4,
                dropout=0.0,
            ),
        ),
        schedule=ScheduleConfig(kind="spectral", spectral_kind="mixed"),
        loss=LossConfig(kind="weighted_eps", bias=0.0),
        optim=OptimConfig(learning_rate=1e-3, warmup_steps=100, ema_decay=0.999),
        steps=2000,
        checkpoint_every=200,
        log_every=20,
    ),
    "imagenet128": _imagenet(128, bias=-1.0, stages=(128, 256, 512)),
    "imagenet256": _imagenet(256, bias=-2.0, stages=(128, 256, 512, 512)),
    "imagenet512": _imagenet(512, bias=-3.0, stages=(128, 128, 256, 512, 512)),
}
