"""Class-conditional Gaussian mixtures over schedules, for sampling them at generation."""

from ._conditioning import (
    ScheduleMixture as ScheduleMixture,
    from_unconstrained as from_unconstrained,
    to_unconstrained as to_unconstrained,
)
