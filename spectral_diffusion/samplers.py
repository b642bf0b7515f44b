"""Samplers: DDIM/DDPM, diffrax ODE and SDE, classifier-free guidance, TDAS noise."""

from ._samplers import (
    TDAS as TDAS,
    Denoiser as Denoiser,
    FrequencyFilter as FrequencyFilter,
    Guided as Guided,
    NoiseFilter as NoiseFilter,
    ODESolution as ODESolution,
    SpaceFilter as SpaceFilter,
    ddim as ddim,
    estimate_frequency_filter as estimate_frequency_filter,
    guided as guided,
    ode as ode,
    sde as sde,
)
