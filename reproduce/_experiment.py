"""The code path every paper-table module shares: train a variant (or resume or reuse
its run), generate class-conditional samples at a given NFE, score them against a
held-out reference set.

Runs live in `DIR/runs/<hash of the training config>/`: any module that needs the
same training config reuses the same run, and an interrupted run resumes from its
last checkpoint. Each evaluation is cached in `DIR/evals/`, so rerunning a module
after an interruption redoes only what is missing.
"""

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec
from tqdm import tqdm

import spectral_diffusion as sd
from spectral_diffusion._checks import check_choice
from spectral_diffusion.train import TrainConfig, restore, train
from spectral_diffusion.train._trainer import (
    MIXTURE_FILE,
    build_schedules,
    build_source,
)

from ._io import argument_parser, atomic_write_json, atomic_write_text, run_metadata
from .configs.suite import SuiteConfig, with_config as with_config


#: How a spectral (per-instance) run gets its schedules at generation time.
GENERATIONS = ("mixture", "true", "mean")


@dataclass(frozen=True)
class Variant:
    """One row of a table: a training config and how to sample from it."""

    name: str
    config: TrainConfig
    #: Spectral runs: "mixture" (drawn from the class-conditional mixture), "true"
    #: (each reference image's own schedule: an oracle), "mean" (the class's mean
    #: schedule). Runs with a fixed schedule ignore it.
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


# ---------------------------------------------------------------- reference and scores


class Reference:
    """The held-out images samples are compared with, and the feature maps of the
    scores. Samples reuse the reference labels (class-balanced) and one fixed noise draw
    per seed, shared by every variant (common random numbers)."""

    def __init__(
        self, suite: SuiteConfig, config: TrainConfig, *, fid_weights=None, progress: bool = True
    ):
        self.progress = progress
        size = config.data.image_size
        reference = dataclasses.replace(suite.reference, image_size=size)
        source = build_source(dataclasses.replace(config, data=reference), split="test")
        self.images, self.labels = arrays(source)
        self.train_source = build_source(config)
        # Enough for the classifier; ImageNet-sized sources are never loaded whole.
        train_images, train_labels = arrays(self.train_source, limit=50_000)
        self.num_classes = getattr(self.train_source, "num_classes", 1)
        self.train_images, self.train_labels = train_images, train_labels
        if suite.features == "classifier":
            model = sd.metrics.train_classifier(
                train_images, train_labels, steps=suite.classifier_steps
            )
            self.feature_fn = jax.vmap(model.features)
        elif suite.features == "inception":
            self.feature_fn = jax.vmap(sd.metrics.load_fid_inception(fid_weights).features)
        else:
            raise ValueError(f"Unknown features {suite.features!r}.")
        self.features = suite.features
        self.reference_features = self._features(self.images)
        self.reference_spectra = self._log_rapsd(self.images)
        self._floors: dict[int, tuple[dict, dict]] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None) -> np.ndarray:
        """Indices of `n` reference images (all for None), taken class by class in
        turn: the first of every class, then the second, and so on (class-balanced
        when `n` is a multiple of the classes). A smaller evaluation thus reuses the
        same images, labels, noise and schedules as the full one (common random
        numbers)."""
        if n is None or n >= len(self):
            return np.arange(len(self))
        rank = np.zeros(len(self), int)
        for c in np.unique(self.labels):
            rank[self.labels == c] = np.arange(np.sum(self.labels == c))
        return np.sort(np.lexsort((self.labels, rank))[:n])

    def floor_at(self, n: int | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """Scores of sets of `n` real training images (default: as many as the reference)
        against the reference: the floor of every score at that N, as the mean and the
        standard deviation over up to 3 disjoint sets (FD's own noise at this N)."""
        n = len(self) if n is None else n
        if n not in self._floors:
            order = np.random.default_rng(0).permutation(len(self.train_images))
            count = max(1, min(3, len(order) // n))
            floors = [
                self.scores(self.train_images[order[i * n : (i + 1) * n]]) for i in range(count)
            ]
            mean = {k: float(np.mean([f[k] for f in floors])) for k in floors[0]}
            spread = {
                k: float(np.std([f[k] for f in floors], ddof=1)) if count > 1 else 0.0
                for k in floors[0]
            }
            self._floors[n] = mean, spread
        return self._floors[n]

    @property
    def floor(self) -> dict[str, float]:
        return self.floor_at()[0]

    @property
    def floor_spread(self) -> dict[str, float]:
        return self.floor_at()[1]

    def _features(self, images):
        return sd.metrics.extract(
            self.feature_fn, images, desc=self.features, progress=self.progress
        )

    def _log_rapsd(self, images):
        return sd.metrics.extract(
            sd.metrics.log_rapsd, images, desc="log-RAPSD", progress=self.progress
        )

    def scores(self, images: np.ndarray) -> dict[str, float]:
        """Fréchet distances to the reference: in the feature space (`fd`), in pixels
        (`pixel_fd`) and in log-RAPSD space (`spectral_fd`)."""
        return {
            "fd": sd.metrics.fd(self._features(images), self.reference_features),
            "pixel_fd": sd.metrics.pixel_fd(images, self.images),
            "spectral_fd": sd.metrics.fd(self._log_rapsd(images), self.reference_spectra),
        }

    def noise(self, seed: int) -> np.ndarray:
        key = jax.random.key(10_000 + seed)
        return np.asarray(jax.random.normal(key, self.images.shape, jnp.float32))


def arrays(source, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images and labels of a source as arrays (a fixed random `limit` of them)."""
    index = np.arange(len(source))
    if limit is not None and len(source) > limit:
        index = np.sort(np.random.default_rng(0).choice(len(source), limit, replace=False))
    if hasattr(source, "images"):
        return np.asarray(source.images)[index], np.asarray(source.labels)[index]
    examples = [source[int(i)] for i in index]
    return np.stack([e["image"] for e in examples]), np.asarray([e["label"] for e in examples])


# ---------------------------------------------------------------- generation


@eqx.filter_jit
def _sample_batch(denoise, knots, cond, z1, nfe: int, noise_filter):
    def one(knots, cond, z):
        schedule = sd.PiecewiseLinear(knots)
        return sd.ddim(denoise, schedule, z, nfe, cond=cond, noise_filter=noise_filter)

    return jax.vmap(one)(knots, cond, z1)


def _data_sharding(batch_size: int) -> NamedSharding | None:
    devices = jax.device_count()
    if devices > 1 and batch_size % devices == 0:
        mesh = jax.make_mesh((devices,), ("data",), axis_types=(AxisType.Auto,))
        return NamedSharding(mesh, PartitionSpec("data"))
    return None


def sample(
    denoise: Callable,
    knots: np.ndarray,
    cond: sd.Conditioning,
    z1: np.ndarray,
    nfe: int,
    *,
    batch_size: int,
    noise_filter=None,
    desc: str = "sample",
    progress: bool = True,
) -> np.ndarray:
    """DDIM samples along per-example schedule knots `(N, K)`, the denoiser conditioned
    on `cond` (fields `(N,)`: each example's label, lambda(0), lambda(1)), in jitted batches of a
    fixed size (the last one padded), with a progress bar. Each batch is split over
    all devices (`jax.sharding`) when its size allows."""
    sharding = _data_sharding(batch_size)
    out = []
    batches = range(0, len(z1), batch_size)
    for start in tqdm(batches, desc=desc, leave=False, disable=not progress):
        # Padded by wrapping around, so every call has the compiled batch shape.
        index = np.arange(start, start + batch_size) % len(z1)
        padded = jax.tree.map(
            lambda a: jax.device_put(np.asarray(a)[index], sharding), (knots, cond, z1)
        )
        x = _sample_batch(denoise, *padded, nfe, noise_filter)
        out.append(np.asarray(x)[: min(batch_size, len(z1) - start)])
    return np.clip(np.concatenate(out), -1.0, 1.0)


class Trained:
    """A finished training run and what generation needs from it."""

    def __init__(self, config: TrainConfig, root: Path, source, *, progress: bool = True):
        self.config = config
        self.workdir = run_dir(root, config)
        state = train(config, self.workdir, progress=progress)
        self.denoiser = state.ema
        self.schedules = build_schedules(config, source)
        self.spectral = config.schedule.kind == "spectral"
        self.mixture = (
            sd.ScheduleMixture.load(self.workdir / MIXTURE_FILE) if self.spectral else None
        )

    def knots(self, generation: str, reference: Reference, nfe: int, seed: int) -> np.ndarray:
        """Sampling schedules `(N, K)` for every reference image."""
        count = len(reference.labels)
        if not self.spectral:
            grid = sd.PiecewiseLinear.on_grid(self.schedules.schedule(None), nfe).knots
            return np.repeat(np.asarray(grid)[None], count, axis=0)
        check_choice(generation, "generation", dict.fromkeys(GENERATIONS))
        if generation == "true":
            return np.asarray(self.schedules.knots(reference.images))
        if generation == "mean":
            weights = jax.nn.softmax(self.mixture.log_weights, axis=-1)
            mean = jnp.einsum("ck,ckd->cd", weights, self.mixture.means)
            knots = sd.knots_from_unconstrained(mean)
            return np.asarray(knots)[reference.labels]
        key = jax.random.key(20_000 + seed)
        return np.asarray(self.mixture.sample(reference.labels, key=key).knots)

    def conditioning(self, knots: np.ndarray, labels: np.ndarray) -> sd.Conditioning:
        """The conditioning this run's denoiser was trained with, for examples of
        `labels` sampled along `knots` `(N, K)`: a spectral run's own schedules, a fixed
        schedule's run the fixed schedule (whatever `knots` it is sampled along)."""
        trained = sd.PiecewiseLinear(knots) if self.spectral else self.schedules.schedule(None)
        return sd.Conditioning.of(trained, labels)

    def denoiser_at(self, step: int | None):
        """The EMA denoiser of a kept checkpoint (`None`: the final one)."""
        if step is None or step == self.config.steps:
            return self.denoiser
        return restore(self.workdir, step=step).ema


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
        true = run.schedules.knots(images) if run.spectral else np.zeros((len(index), 2))
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


def seeded(config: TrainConfig, seeds: int) -> list[TrainConfig]:
    return [dataclasses.replace(config, seed=s) for s in range(seeds)]


def summarise(records: list[dict], metric: str, **where) -> tuple[float, float, int]:
    """Mean, standard deviation (ddof 1, 0 for one value) and count of `metric` over the
    records matching `where`."""
    values = [r[metric] for r in records if all(r[k] == v for k, v in where.items())]
    if not values:
        raise KeyError(f"No records with {where}.")
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), spread, len(values)


def mean_pm(records: list[dict], metric: str, **where) -> str:
    mean, spread, count = summarise(records, metric, **where)
    return f"{mean:.4g} ± {spread:.2g}" if count > 1 else f"{mean:.4g}"


# ---------------------------------------------------------------- the modules' shell


def suite_main(name: str, doc: str, argv: list[str], body: Callable) -> dict:
    """Parse `--preset/--out/--seeds/--fid-weights`, run `body(runner, args)` →
    `(records, markdown, extra)`, and write DIR/<name>.json (records, extra, metadata)
    and DIR/<name>.md."""
    import time

    from .configs.suite import PRESETS

    parser = argument_parser(f"reproduce.{name}", doc)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("out/reproduce"))
    parser.add_argument("--seeds", type=int, default=None, help="override the preset's seeds")
    parser.add_argument(
        "--fid-weights",
        default=None,
        help="the Inception FID weights file (paper preset; see the Metrics page)",
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    suite = PRESETS[args.preset]
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        suite = dataclasses.replace(suite, seeds=args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = Runner(suite, args.out, progress=not args.no_progress, fid_weights=args.fid_weights)
    start = time.perf_counter()
    records, markdown, extra = body(runner, args)
    result = {
        "records": records,
        **extra,
        "meta": {
            **run_metadata(f"reproduce.{name}", argv),
            "preset": args.preset,
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    atomic_write_json(args.out / f"{name}.json", result)
    atomic_write_text(args.out / f"{name}.md", markdown)
    print(f"Wrote {args.out}/{name}.json and {name}.md in {result['meta']['seconds']} s")
    return result
