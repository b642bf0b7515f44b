"""Presets of `python -m reproduce.oracle`: the same code path, different sizes."""

from dataclasses import dataclass


@dataclass(frozen=True)
class OracleConfig:
    #: Image sizes in pixels (built-in photographs, never upsampled).
    resolutions: tuple[int, ...]
    #: Denoiser evaluations per sample.
    nfes: tuple[int, ...]
    #: Closed-form samplers: "ddim", "ddpm", "ode-heun" (NFE = 2 x Heun steps).
    samplers: tuple[str, ...]
    #: Sizes at which the real samplers also run (Monte Carlo) against the closed form.
    monte_carlo_resolutions: tuple[int, ...]
    monte_carlo_samples: int
    monte_carlo_images: int
    monte_carlo_nfe: int
    #: Base resolution of the shifted cosine and low end of the interpolated cosine.
    shift_base: int = 64
    interpolation_low: int = 32


PRESETS = {
    # Measured: about 2 minutes on the 2-core CI machine.
    "cpu": OracleConfig(
        resolutions=(32, 64, 128, 256, 512),
        nfes=(4, 8, 16, 32, 64, 128),
        samplers=("ddim", "ddpm", "ode-heun"),
        monte_carlo_resolutions=(32, 64),
        monte_carlo_samples=512,
        monte_carlo_images=2,
        monte_carlo_nfe=16,
    ),
    # For an accelerator: more steps, more Monte Carlo, the SDE's closed form too.
    "full": OracleConfig(
        resolutions=(32, 64, 128, 256, 512),
        nfes=(4, 8, 16, 32, 64, 128, 256, 512),
        samplers=("ddim", "ddpm", "ode-heun", "sde-euler"),
        monte_carlo_resolutions=(32, 64, 128),
        monte_carlo_samples=4096,
        monte_carlo_images=15,
        monte_carlo_nfe=32,
    ),
    # What the test suite runs: the same code on a sliver.
    "smoke": OracleConfig(
        resolutions=(32, 64),
        nfes=(4, 8),
        samplers=("ddim", "ddpm", "ode-heun"),
        monte_carlo_resolutions=(32,),
        monte_carlo_samples=128,
        monte_carlo_images=1,
        monte_carlo_nfe=8,
    ),
}


@dataclass(frozen=True)
class OptimalConfig:
    """Presets of `python -m reproduce.optimal`."""

    #: Image sizes in pixels (built-in photographs, never upsampled).
    resolutions: tuple[int, ...]
    #: Denoiser evaluations per sample.
    nfes: tuple[int, ...]
    #: Samplers with a differentiable closed form: "ddim", "ddpm".
    samplers: tuple[str, ...]
    #: What is minimised (and reported): "kl", "w2", or their sum "kl+w2". Either
    #: alone has a degenerate optimum (KL leaves the strong low frequencies wrong,
    #: W2 the weak high ones); the figures show the last one.
    metrics: tuple[str, ...]
    #: Adam iterations of `optimal_schedule`.
    steps: int = 300
    #: Base resolution of the shifted cosine and low end of the interpolated cosine.
    shift_base: int = 64
    interpolation_low: int = 32


OPTIMAL_PRESETS = {
    "cpu": OptimalConfig(
        resolutions=(32, 64, 128, 256, 512),
        nfes=(8, 16, 32),
        samplers=("ddim", "ddpm"),
        metrics=("kl", "w2", "kl+w2"),
    ),
    "smoke": OptimalConfig(
        resolutions=(32, 64),
        nfes=(8,),
        samplers=("ddim",),
        metrics=("kl", "w2", "kl+w2"),
        steps=30,
    ),
}
