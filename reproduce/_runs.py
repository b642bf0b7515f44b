"""Trained runs and cached evaluations: train a variant (or resume or reuse its run),
generate class-conditional samples at a given NFE, score them against the reference.

Runs live in `DIR/runs/<hash of the training config>/`: any module that needs the
same training config reuses the same run, and an interrupted run resumes from its
last checkpoint. Each evaluation is cached in `DIR/evals/`, so rerunning a module
after an interruption redoes only what is missing.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import spectral_diffusion as sd
from spectral_diffusion.train import Recipe, TrainConfig, load_mixture, restore, train

from ._io import atomic_write_json
from ._reference import Reference
from ._sampling import sample
from .configs.suite import SuiteConfig, with_config


#: How a spectral (per-instance) run gets its schedules at generation time.
GENERATIONS = ("mixture", "true", "mean", "optimal", "optimal_fixed_ends")
#: What the "optimal" generations minimise on each class's mean-spectrum oracle: the
#: exact KL plus relative W2 of DDIM at the sampling NFE. Either alone is degenerate
#: (Optimal schedules page): the KL optimum leaves the strong low frequencies wrong,
#: the W2 optimum the weak high ones. Cached evaluations are keyed by the variant,
#: not by this setting: after changing it, delete those arms' files in DIR/evals.
OPTIMAL_GENERATION = dict(sampler="ddim", metric="kl+w2")


@dataclass(frozen=True)
class Variant:
    """One row of a table: a training config and how to sample from it."""

    name: str
    config: TrainConfig
    #: Spectral runs: "mixture" (drawn from the class-conditional mixture), "true"
    #: (each reference image's own schedule: an oracle), "mean" (the class's mean
    #: schedule), "optimal" (the oracle-optimal schedule of the class's mean power
    #: spectrum at the sampling NFE, `optimal_knots`), "optimal_fixed_ends" (the same,
    #: started from the class's mean schedule and keeping its end points, so the
    #: conditioning stays where the model was trained). Runs with a fixed schedule
    #: ignore it.
    generation: str = "mixture"
    #: Classifier-free guidance scale (1 = none) and the logSNR interval it acts in
    #: (None = everywhere).
    guidance: float = 1.0
    guidance_interval: tuple[float, float] | None = None
    #: TDAS frequency filter, estimated from this variant's own samples at this NFE.
    tdas: bool = False
    #: Sample along another (spectral) run's schedules (its `generation`), keeping this
    #: run's own conditioning: "schedule at inference only".
    schedules_from: TrainConfig | None = None

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        fields.pop("name")
        return _digest(json.dumps(fields, sort_keys=True, default=str))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def baseline_of(config: TrainConfig) -> TrainConfig:
    """The SiD2 baseline of a spectral config: the interpolated cosine schedule, with the
    same data, network, sigmoid-weighted loss (and bias), optimiser and budget."""
    return with_config(config, schedule=dict(kind="interpolated_cosine"))


def run_dir(root: Path, config: TrainConfig) -> Path:
    return root / "runs" / _digest(config.to_json())


class Trained:
    """A finished training run and what generation needs from it."""

    def __init__(self, config: TrainConfig, root: Path, source, *, progress: bool = True):
        self.config = config
        self.workdir = run_dir(root, config)
        state = train(config, self.workdir, progress=progress)
        self.denoiser = state.ema
        self.recipe = Recipe(config, source)
        self.spectral = self.recipe.per_example
        self.mixture = load_mixture(self.workdir) if self.spectral else None
        self._true_knots = jax.jit(lambda images: self.recipe.schedule_for(images).knots)

    def true_knots(self, images: np.ndarray) -> np.ndarray:
        """Each image's own training schedule's knots `(N, K)` (spectral runs)."""
        return np.asarray(self._true_knots(images))

    def knots(self, generation: str, reference: Reference, nfe: int, seed: int) -> np.ndarray:
        """Sampling schedules `(N, K)` for every reference image."""
        count = len(reference.labels)
        if not self.spectral:
            grid = sd.PiecewiseLinear.on_grid(self.recipe.fixed_schedule, nfe).knots
            return np.repeat(np.asarray(grid)[None], count, axis=0)
        if generation not in GENERATIONS:
            raise ValueError(f"`generation` must be one of {GENERATIONS}, got {generation!r}.")
        if generation == "true":
            return self.true_knots(reference.images)
        if generation == "optimal":
            return optimal_knots(reference, nfe)[reference.labels]
        if generation == "optimal_fixed_ends":
            start = sd.PiecewiseLinear(self.class_mean_knots())
            return optimal_knots(reference, nfe, start)[reference.labels]
        if generation == "mean":
            return self.class_mean_knots()[reference.labels]
        key = jax.random.key(20_000 + seed)
        return np.asarray(self.mixture.sample(reference.labels, key=key).knots)

    def class_mean_knots(self) -> np.ndarray:
        """Each class's mean schedule under the mixture (the mean of its unconstrained
        coordinates), knots `(num_classes, K)`."""
        weights = jax.nn.softmax(self.mixture.log_weights, axis=-1)
        mean = jnp.einsum("ck,ckd->cd", weights, self.mixture.means)
        return np.asarray(sd.knots_from_unconstrained(mean))

    def conditioning(self, knots: np.ndarray, labels: np.ndarray) -> sd.Conditioning:
        """The conditioning this run's denoiser was trained with, for examples of
        `labels` sampled along `knots` `(N, K)`: a spectral run's own schedules, a fixed
        schedule's run the fixed schedule (whatever `knots` it is sampled along)."""
        trained = sd.PiecewiseLinear(knots) if self.spectral else self.recipe.fixed_schedule
        return sd.Conditioning.of(trained, labels)

    def denoiser_at(self, step: int | None):
        """The EMA denoiser of a kept checkpoint (`None`: the final one)."""
        if step is None or step == self.config.steps:
            return self.denoiser
        return restore(self.workdir, step=step).ema


def optimal_knots(
    reference: Reference, nfe: int, fixed_ends: sd.PiecewiseLinear | None = None
) -> np.ndarray:
    """Per class, the knots `(num_classes, nfe + 1)` of the schedule with the least
    exact error (`OPTIMAL_GENERATION`) on the class's mean-spectrum Gaussian at `nfe`
    (`sd.optimal_schedule`): from its default start with free end points, or, given
    one schedule per class, from those keeping their end points."""
    options = dict(OPTIMAL_GENERATION)
    if fixed_ends is not None:
        options.update(init=fixed_ends, fix_ends=True)
    optimum = sd.optimal_schedule(reference.class_oracles(), nfe, **options)
    return np.asarray(optimum.knots)


# ---------------------------------------------------------------- evaluation


class Runner:
    """Trains (or reuses) runs and evaluates variants, caching every score."""

    def __init__(self, suite: SuiteConfig, root: Path, *, progress: bool = True, fid_weights=None):
        self.suite, self.root, self.progress = suite, Path(root), progress
        self.fid_weights = fid_weights
        self._trained: dict[str, Trained] = {}
        self._references: dict[int, Reference] = {}

    def reference(self, config: TrainConfig) -> Reference:
        size = config.data.image_size
        if size not in self._references:
            self._references[size] = Reference(
                self.suite, config, fid_weights=self.fid_weights, progress=self.progress
            )
        return self._references[size]

    def trained(self, config: TrainConfig) -> Trained:
        key = config.to_json()
        if key not in self._trained:
            source = self.reference(config).train_source  # the same data config
            self._trained[key] = Trained(config, self.root, source, progress=self.progress)
        return self._trained[key]

    def generate(
        self, variant: Variant, nfe: int, n: int | None = None
    ) -> tuple[np.ndarray, Reference]:
        """The variant's samples at `nfe` (uncached), one per image of the reference's
        class-balanced subset of `n` (all for None)."""
        run = self.trained(variant.config)
        reference = self.reference(variant.config)
        seed = variant.config.seed
        along = self.trained(variant.schedules_from) if variant.schedules_from else run
        index = reference.subset(n)
        knots = along.knots(variant.generation, reference, nfe, seed)[index]
        labels, z1 = reference.labels[index], reference.noise(seed)[index]
        cond = run.conditioning(knots, labels)
        denoise = run.denoiser
        if variant.guidance != 1.0:
            denoise = sd.guided(
                denoise,
                variant.guidance,
                variant.guidance_interval,
                unconditional=sd.NullClass(reference.num_classes),
            )
        args = (denoise, knots, cond, z1, nfe)
        options = dict(batch_size=self.suite.sample_batch, progress=self.progress)
        desc = f"{variant.name} NFE {nfe}"
        samples = sample(*args, desc=desc, **options)
        if variant.tdas:
            frequency = sd.estimate_frequency_filter(reference.train_images, samples)
            tdas = sd.TDAS(frequency=frequency)
            samples = sample(*args, noise_filter=tdas, desc=desc + " TDAS", **options)
        return samples, reference

    def _eval_path(self, kind: str, *parts) -> Path:
        suite = self.suite
        common = [dataclasses.asdict(suite.reference), suite.features, suite.classifier_steps]
        return (
            self.root
            / "evals"
            / f"{kind}{_digest(json.dumps([*parts, *common], default=str))}.json"
        )

    def evaluate(self, variant: Variant, nfe: int, n: int | None = None) -> dict:
        """Scores of the variant at `nfe` on the reference's subset of `n` images (all
        for None), cached in `DIR/evals/`."""
        reference = self.reference(variant.config)
        count = len(reference.subset(n))
        full = count == len(reference)
        path = self._eval_path("", variant.key(), nfe, count)
        if path.is_file():
            record = json.loads(path.read_text())
        else:
            samples, _ = self.generate(variant, nfe, None if full else count)
            record = reference.scores(samples)
            atomic_write_json(path, record)
        return {
            "variant": variant.name,
            "seed": variant.config.seed,
            "resolution": variant.config.data.image_size,
            "nfe": nfe,
            "n": count,
            **record,
        }

    def floor(self, config: TrainConfig, n: int | None = None) -> dict[str, float]:
        """Scores of real training images against the reference (same N; mean over up
        to 3 disjoint sets, whose spread is `Reference.floor_at(n)[1]`)."""
        return self.reference(config).floor_at(n)[0]

    def denoising(self, config: TrainConfig, step: int | None = None, n: int | None = None):
        """Held-out x-MSE per logSNR of the run's EMA denoiser (at a kept `step`; the
        final one for None) on the first `n` reference images of each class, each
        conditioned as in training (its label and its own schedule's end points), with
        common noise: `{"logsnr": [...], "mse": [...] (mean over images), "J": ...}`,
        cached in `DIR/evals/`."""
        suite = self.suite
        run = self.trained(config)
        reference = self.reference(config)
        index = reference.subset(n)
        logsnrs = [float(v) for v in suite.diagnostic_logsnrs]
        grid = np.asarray(logsnrs)
        step = config.steps if step is None else step
        path = self._eval_path("denoising-", config.to_json(), step, len(index), logsnrs)
        if path.is_file():
            return json.loads(path.read_text())
        images, labels = reference.images[index], reference.labels[index]
        true = run.true_knots(images) if run.spectral else np.zeros((len(index), 2))
        cond = run.conditioning(np.asarray(true), labels)
        mse = sd.metrics.denoising_mse(
            run.denoiser_at(step),
            images,
            cond,
            grid,
            key=jax.random.key(30_000),
            batch_size=suite.sample_batch,
        ).mean(axis=1)
        record = {
            "logsnr": logsnrs,
            "mse": [float(v) for v in mse],
            "J": sd.metrics.weighted_denoising_error(grid, mse),
            "step": step,
            "n": len(index),
        }
        atomic_write_json(path, record)
        return record
