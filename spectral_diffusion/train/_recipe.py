"""The recipe: what a config's strings mean. The one place that turns a
[`spectral_diffusion.train.TrainConfig`][] into the objects a run is built from: the
data source, the denoiser, the loss, the training proposal, the optimiser, each batch's
schedules (`Recipe.schedule_for(images)`) and the schedule mixture generation samples
from (`fit_mixture`)."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .. import data as data_lib
from .._checks import check_choice
from .._compile import batch_groups
from .._losses import EpsLoss, Loss, SigmoidWeighting, VLoss, WeightedEpsLoss, batch_loss
from .._mixture import ScheduleMixture
from .._nets import PARAMETERISATIONS, Denoiser, UNet, UViT
from .._proposals import Proposal, ScheduleProposal, TruncatedProposal
from .._schedules import Cosine, InterpolatedCosine, Schedule
from .._schedules._spectral import global_spectral_schedule, spectral_schedule
from .._spectrum import rapsd
from ._config import TrainConfig


#: Schedule kinds built from the data's spectra (per example or for the whole data set).
SPECTRAL_KINDS = ("spectral", "global_spectral")
_SCHEDULE_KINDS = ("spectral", "global_spectral", "interpolated_cosine", "cosine")
_ARCHITECTURES = {"unet": UNet, "uvit": UViT}
_LOSSES = {
    "weighted_eps": lambda loss: WeightedEpsLoss(SigmoidWeighting(loss.bias), loss.multiscale_base),
    "eps": lambda loss: EpsLoss(loss.multiscale_base),
    "v": lambda loss: VLoss(loss.multiscale_base),
}
_PROPOSALS = ("auto", "schedule", "truncated")


_DATA_SOURCES = {
    "builtin_patches": lambda data, split, seed: data_lib.BuiltinPatches(
        data.image_size, split, patches_per_image=data.patches_per_image, seed=seed
    ),
    "npz": lambda data, split, seed: data_lib.npz_source(data.path),
    "image_folder": lambda data, split, seed: data_lib.image_folder(data.path, data.image_size),
    "cifar10": lambda data, split, seed: data_lib.cifar10(data.path, split),
    "tfds": lambda data, split, seed: data_lib.TFDSArrayRecord(data.path, split, data.image_size),
}


def data_source(config: TrainConfig, split: str = "train"):
    """The data source `config.data` names (a grain-compatible random-access source)."""
    data = config.data
    check_choice(data.source, "data.source", _DATA_SOURCES)
    if data.source != "builtin_patches" and not data.path:
        raise ValueError(f"`data.path` is required for data.source={data.source!r}.")
    return _DATA_SOURCES[data.source](data, split, config.seed)


def num_classes_of(source) -> int:
    """The number of classes of a source (1 for an unlabelled one)."""
    return getattr(source, "num_classes", 1)


def baseline_schedule(config: TrainConfig) -> Schedule:
    """The SiD2 baseline schedule at the config's resolution: the interpolated cosine
    from `schedule.low` (the plain cosine over [-15, 15] at or below `low` pixels)."""
    size = config.data.image_size
    return InterpolatedCosine(size, low=min(config.schedule.low, size))


def spectral_options(config: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of `spectral_schedule` that the config sets."""
    s = config.schedule
    return dict(
        kind=s.spectral_kind,
        weight=s.weight,
        num_knots=s.num_knots,
        eps_hi=s.eps_hi,
        eps_lo=s.eps_lo,
    )


def dataset_rapsd(source, batch_size: int = 256) -> Float[np.ndarray, "N bins"]:
    """RAPSD of every example of a source, computed in batches."""
    run = jax.jit(rapsd)
    out = []
    for start in range(0, len(source), batch_size):
        stop = min(start + batch_size, len(source))
        images = np.stack([source[i]["image"] for i in range(start, stop)])
        out.append(np.asarray(run(images)))
    return np.concatenate(out)


class Recipe:
    """The objects a config describes. Building one checks every choice of the config
    (a typo fails at once); the global spectral schedule is computed from `source`.

    **Arguments:**

    - `config`: a [`spectral_diffusion.train.TrainConfig`][].
    - `source`: the training data (only the `"global_spectral"` schedule reads it).

    **Attributes:** `config`, `loss`, `proposal` (the training proposal `loss.proposal`
    names; `"auto"` is truncated to each example's range for the spectral kinds and the
    schedule's own density otherwise), `optimizer`, `per_example` (each image has
    its own schedule) and `fixed_schedule` (the schedule every example shares; `None`
    for per-example schedules, and for the global spectral one without `source`).
    """

    config: TrainConfig
    loss: Loss
    proposal: Proposal
    optimizer: optax.GradientTransformation
    per_example: bool
    fixed_schedule: Schedule | None

    def __init__(self, config: TrainConfig, source=None):
        model, schedule = config.model, config.schedule
        check_choice(config.data.source, "data.source", _DATA_SOURCES)
        check_choice(model.architecture, "model.architecture", _ARCHITECTURES)
        check_choice(model.parameterisation, "model.parameterisation", PARAMETERISATIONS)
        check_choice(config.loss.kind, "loss.kind", _LOSSES)
        check_choice(config.loss.proposal, "loss.proposal", dict.fromkeys(_PROPOSALS))
        check_choice(schedule.kind, "schedule.kind", dict.fromkeys(_SCHEDULE_KINDS))
        self.config = config
        self.loss = _LOSSES[config.loss.kind](config.loss)
        self.proposal = _proposal(config)
        self.optimizer = _optimizer(config)
        self.per_example = schedule.kind == "spectral"
        self.fixed_schedule = _fixed_schedule(config, source)

    def denoiser(self, num_classes: int, *, key: PRNGKeyArray) -> Denoiser:
        """A freshly initialised denoiser for data of `num_classes` classes."""
        model = self.config.model
        net = _ARCHITECTURES[model.architecture](
            image_size=self.config.data.image_size, num_classes=num_classes, key=key, **model.kwargs
        )
        return Denoiser(net, PARAMETERISATIONS[model.parameterisation]())

    def batch_loss(
        self,
        denoiser: Denoiser,
        schedule: Schedule,
        images: Float[Array, "B C H W"],
        labels: Int[Array, " B"],
        *,
        key: PRNGKeyArray,
        num_classes: int,
    ) -> Float[Array, ""]:
        """The loss the train step differentiates: [`spectral_diffusion.batch_loss`][]
        with the recipe's loss, proposal and label dropout, on one CPU device computed
        in independent groups of the batch (for the U-ViT only its transformer; same
        value, faster: see the Benchmarks page)."""
        return batch_loss(
            self.loss,
            denoiser,
            schedule,
            images,
            labels,
            key=key,
            label_dropout=self.config.label_dropout,
            num_classes=num_classes,
            proposal=self.proposal,
            groups=batch_groups(images.shape[0]),
        )

    def schedule_for(self, images: Float[Array, "*batch C H W"]) -> Schedule:
        """The schedule(s) training uses for `images`: each image's own spectral
        schedule (batch shape `images.shape[:-3]`) or the shared one. Traceable: the
        train step calls it on each batch inside `jit`."""
        if self.per_example:
            return spectral_schedule(rapsd(images), **spectral_options(self.config))
        if self.fixed_schedule is None:
            raise ValueError(
                "The global spectral schedule is computed from the data: build the "
                "recipe with it, `Recipe(config, source)`."
            )
        return self.fixed_schedule


def _fixed_schedule(config: TrainConfig, source) -> Schedule | None:
    kind = config.schedule.kind
    if kind == "global_spectral":
        if source is None:
            return None
        return global_spectral_schedule(dataset_rapsd(source), **spectral_options(config))
    if kind == "interpolated_cosine":
        return baseline_schedule(config)
    return None if kind == "spectral" else Cosine()


def _proposal(config: TrainConfig) -> Proposal:
    choice = config.loss.proposal
    if choice == "auto":
        choice = "truncated" if config.schedule.kind in SPECTRAL_KINDS else "schedule"
    if choice == "schedule":
        return ScheduleProposal()
    return TruncatedProposal(baseline_schedule(config))


def _optimizer(config: TrainConfig) -> optax.GradientTransformation:
    o = config.optim
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, o.learning_rate, max(o.warmup_steps, 1), max(config.steps, o.warmup_steps + 1)
    )
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip),
        optax.adamw(schedule, b2=o.b2, weight_decay=o.weight_decay),
    )


def fit_mixture(config: TrainConfig, source) -> ScheduleMixture:
    """The class-conditional mixture over the training set's spectral schedules, which
    generation samples schedules from (`config.schedule.mixture_components` components
    per class, seeded by `config.seed`)."""
    knots = spectral_schedule(jnp.asarray(dataset_rapsd(source)), **spectral_options(config)).knots
    labels = np.asarray([source[i]["label"] for i in range(len(source))])
    return ScheduleMixture.fit(
        knots,
        labels,
        num_classes=num_classes_of(source),
        num_components=config.schedule.mixture_components,
        key=jax.random.key(config.seed),
    )
