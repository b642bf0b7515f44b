from ._common import DenoiseFn as DenoiseFn, NoiseFilter as NoiseFilter, SampleStats as SampleStats
from ._ddim import ddim as ddim
from ._diffrax import ode as ode, sde as sde
from ._guidance import Guided as Guided, guided as guided
from ._tdas import (
    TDAS as TDAS,
    FrequencyFilter as FrequencyFilter,
    SpaceFilter as SpaceFilter,
    estimate_frequency_filter as estimate_frequency_filter,
)
