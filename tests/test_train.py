"""The trainer on a tiny model. conftest gives 4 CPU devices: every run here is data
parallel over them."""

import dataclasses
import json
import os
import signal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tree_allclose
from jax.sharding import AxisType, NamedSharding, PartitionSpec

import spectral_diffusion as sd
from spectral_diffusion.train import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    Recipe,
    ScheduleConfig,
    TrainConfig,
    _recipe,
    _trainer,
    data_source,
    init_state,
    make_train_step,
    restore,
    train,
)


TINY = TrainConfig(
    data=DataConfig(source="builtin_patches", image_size=8, batch_size=8, patches_per_image=4),
    model=ModelConfig(
        architecture="uvit",
        parameterisation="v",
        kwargs=dict(stage_channels=(8, 16), dim=16, depth=1, num_heads=2),
    ),
    schedule=ScheduleConfig(kind="spectral", num_knots=16, mixture_components=1),
    optim=OptimConfig(learning_rate=3e-3, warmup_steps=1),
    steps=4,
    checkpoint_every=2,
    log_every=1,
)


def leaves(state):
    return jax.tree.leaves(eqx.filter(state, eqx.is_array))


def test_resume_equals_uninterrupted(tmp_path):
    # Run "a" also keeps every checkpoint at a multiple of 2 (learning curves).
    curve = dataclasses.replace(TINY, keep_checkpoints=1, keep_every=2)
    straight = train(curve, tmp_path / "a", progress=False)
    early = restore(tmp_path / "a", step=2)
    assert int(early.step) == 2 and not tree_allclose(leaves(early), leaves(straight))
    with pytest.raises(FileNotFoundError, match=r"step 3 .*kept: \[2, 4\]"):
        restore(tmp_path / "a", step=3)
    train(TINY, tmp_path / "b", steps=2, progress=False)
    resumed = train(TINY, tmp_path / "b", progress=False)
    assert int(resumed.step) == 4
    assert tree_allclose(leaves(straight), leaves(resumed), rtol=1e-6, atol=1e-7)
    assert tree_allclose(leaves(restore(tmp_path / "b")), leaves(resumed), rtol=0, atol=0)
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4]  # no duplicated lines after resuming
    assert (tmp_path / "b" / "schedule_mixture.npz").is_file()
    with pytest.raises(ValueError, match="different config"):
        train(dataclasses.replace(TINY, seed=5), tmp_path / "b", progress=False)


def test_sigterm_checkpoints_and_stops(tmp_path, monkeypatch):

    real = _trainer.data_lib.training_batches

    class Interrupting:
        """Batches as usual, but SIGTERM arrives while step 2's batch is fetched."""

        def __init__(self, *args, **kwargs):
            self.batches = real(*args, **kwargs)

        def __getitem__(self, step):
            if step == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return self.batches[step]

    monkeypatch.setattr(_trainer.data_lib, "training_batches", Interrupting)
    config = dataclasses.replace(TINY, steps=50, checkpoint_every=100)
    state = train(config, tmp_path, progress=False)
    assert int(state.step) == 3  # step 2 (0-based) finished, then checkpoint and stop
    assert int(restore(tmp_path).step) == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_four_devices_match_one():
    assert jax.device_count() == 4
    source = sd.data.BuiltinPatches(8, patches_per_image=4)
    state = init_state(TINY, source.num_classes)
    step = make_train_step(Recipe(TINY, source), source.num_classes)
    images, labels = jnp.asarray(source.images[:8]), jnp.asarray(source.labels[:8])
    key = jax.random.key(3)
    one, _ = step(state, images, labels, key)
    mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Auto,))
    split = NamedSharding(mesh, PartitionSpec("data"))
    put = lambda a: jax.device_put(a, split)  # noqa: E731
    four, _ = step(state, put(images), put(labels), key)
    assert tree_allclose(leaves(one), leaves(four), rtol=1e-5, atol=1e-6)


def test_tiny_model_overfits_eight_images():
    source = sd.data.BuiltinPatches(8, patches_per_image=4)
    config = dataclasses.replace(
        TINY, optim=OptimConfig(learning_rate=1e-2, warmup_steps=1), steps=150
    )
    state = init_state(config, source.num_classes)
    step = make_train_step(Recipe(config, source), source.num_classes)
    images, labels = jnp.asarray(source.images[::8][:8]), jnp.asarray(source.labels[::8][:8])
    key = jax.random.key(0)  # the same t and noise every step: a fixed objective
    losses = []
    for _ in range(150):
        state, metrics = step(state, images, labels, key)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


@pytest.mark.parametrize("kind", ["global_spectral", "interpolated_cosine"])
def test_other_schedules_train(tmp_path, kind):
    config = dataclasses.replace(
        TINY, schedule=ScheduleConfig(kind=kind, num_knots=16, low=4), steps=2
    )
    state = train(config, tmp_path, progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert int(state.step) == 2 and all(np.isfinite(json.loads(l)["loss"]) for l in lines)  # noqa: E741


def test_trained_model_plugs_into_every_sampler(tmp_path):
    state = train(TINY, tmp_path, progress=False)
    denoiser = state.ema
    mixture = sd.ScheduleMixture.load(tmp_path / "schedule_mixture.npz")
    labels = jnp.array([0, 3])
    schedules = mixture.sample(labels, key=jax.random.key(0))
    z1 = jax.random.normal(jax.random.key(1), (2, 3, 8, 8))
    keys = jax.random.split(jax.random.key(2), 2)
    samplers = {
        "ddim": lambda d, s, z, k, c: sd.ddim(d, s, z, 4, cond=c),
        "ddpm": lambda d, s, z, k, c: sd.ddim(d, s, z, 4, eta=1.0, key=k, cond=c),
        "ode": lambda d, s, z, k, c: sd.ode(d, s, z, 2, cond=c),
        "ode_adaptive": lambda d, s, z, k, c: sd.ode(
            d, s, z, solver=diffrax.Tsit5(), rtol=1e-2, atol=1e-2, cond=c
        ),
        "sde": lambda d, s, z, k, c: sd.sde(d, s, z, 4, key=k, cond=c),
    }
    for name, sampler in samplers.items():

        def one(schedule, z, key, label):
            # Guidance around the trained denoiser defaults to its null class.
            cond = sd.Conditioning.of(schedule, label)
            return sampler(sd.guided(denoiser, 2.0), schedule, z, key, cond)

        out = eqx.filter_jit(jax.vmap(one))(schedules, z1, keys, labels)
        assert out.shape == (2, 3, 8, 8) and bool(jnp.all(jnp.isfinite(out))), name

    # Without `cond`, a library denoiser samples unconditionally: the null class with
    # the schedule's own end points.
    schedule = sd.PiecewiseLinear(schedules.knots[0])
    plain = sd.ddim(denoiser, schedule, z1[0], 4)
    null = sd.Conditioning.of(schedule, denoiser.num_classes)
    assert int(null.label) == denoiser.num_classes == mixture.num_classes
    assert jnp.allclose(plain, sd.ddim(denoiser, schedule, z1[0], 4, cond=null))
    conditional = sd.ddim(denoiser, schedule, z1[0], 4, cond=null._replace(label=jnp.asarray(3)))
    assert not jnp.allclose(plain, conditional)
    # Guidance's default unconditional branch is that null class too.
    unconditional = sd.guided(denoiser, 2.0).unconditional(null._replace(label=jnp.asarray(3)))
    assert all(bool(a == b) for a, b in zip(unconditional, null, strict=True))


def test_cli(tmp_path, monkeypatch):
    from spectral_diffusion.train.__main__ import load_config, main

    kept = []  # train() on the CPU backend keeps freed host memory for the next step
    monkeypatch.setattr(_trainer, "keep_host_memory", lambda: kept.append(True))

    assert load_config("cpu").data.image_size == 32
    for name in ("imagenet128", "imagenet256", "imagenet512"):
        assert load_config(name).data.image_size == int(name[-3:])
    with pytest.raises(ValueError, match="`--config` must be one of"):
        load_config("bogus")
    path = tmp_path / "tiny.py"
    path.write_text(
        "import dataclasses\n"
        "from test_train import TINY\n"
        "config = dataclasses.replace(TINY, steps=1)\n"
    )
    main(["--config", str(path), "--workdir", str(tmp_path / "run")])
    assert int(restore(tmp_path / "run").step) == 1
    assert kept == [True]


def test_ema_warms_up_and_tracks_the_trained_parameters(tmp_path):
    from spectral_diffusion.train import ema_decay

    steps = jnp.array([0, 10, 90, 10_000])
    np.testing.assert_allclose(ema_decay(0.999, steps), [0.1, 11 / 20, 91 / 100, 0.999])
    config = dataclasses.replace(TINY, steps=30, checkpoint_every=30)
    state = train(config, tmp_path, progress=False)
    init = init_state(config, 15)

    def distance(a, b):
        return sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(leaves(a), leaves(b)))

    # A fixed decay of 0.999 would leave the EMA 97% initial parameters after 30 steps.
    assert distance(state.ema, state.denoiser) < 0.25 * distance(init.denoiser, state.denoiser)


def test_recipe_turns_config_strings_into_objects_and_schedules_into_the_step():
    from spectral_diffusion.train import Recipe, fit_mixture

    source = sd.data.BuiltinPatches(8, patches_per_image=4)
    recipe = Recipe(TINY, source)
    images = jnp.asarray(source.images[:3])
    # Per-example: each image's own spectral schedule, traceable inside jit.
    expected = sd.spectral_schedule(sd.rapsd(images), num_knots=16).knots
    got = jax.jit(lambda x: recipe.schedule_for(x).knots)(images)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert recipe.per_example and recipe.fixed_schedule is None
    assert isinstance(recipe.proposal, sd.TruncatedProposal)  # "auto" for spectral kinds
    # Shared schedules: the same object for every batch.
    cosine = Recipe(dataclasses.replace(TINY, schedule=ScheduleConfig(kind="cosine")))
    assert cosine.schedule_for(images) is cosine.fixed_schedule
    assert isinstance(cosine.proposal, sd.ScheduleProposal)
    # The global spectral schedule needs the data to exist.
    global_ = dataclasses.replace(TINY, schedule=ScheduleConfig(kind="global_spectral"))
    with pytest.raises(ValueError, match=r"Recipe\(config, source\)"):
        Recipe(global_).schedule_for(images)
    assert Recipe(global_, source).schedule_for(images).knots.ndim == 1
    # Every choice is checked when the recipe is built, naming the field.
    for field, bad in [("loss", dict(kind="l1")), ("schedule", dict(kind="linear"))]:
        config = dataclasses.replace(
            TINY, **{field: dataclasses.replace(getattr(TINY, field), **bad)}
        )
        with pytest.raises(ValueError, match=f"`{field}.kind`"):
            Recipe(config)
    # The mixture generation samples from: one per class, over the training schedules.
    mixture = fit_mixture(TINY, source)
    assert mixture.num_classes == source.num_classes


def _equinox_formulation(monkeypatch):
    """The networks' layers applied the plain equinox way (`jax.vmap(layer)`,
    `MultiheadAttention.__call__`) and the step compiled with XLA's default options:
    the formulation before the speed work of the Benchmarks page."""
    from spectral_diffusion import _compile
    from spectral_diffusion._nets import _blocks, _uvit

    reference = {
        "dense": lambda layer, x: jax.vmap(layer)(x.reshape(-1, x.shape[-1])).reshape(
            *x.shape[:-1], -1
        ),
        "mlp": lambda module, x: jax.vmap(module)(x.reshape(-1, x.shape[-1])).reshape(
            *x.shape[:-1], -1
        ),
        "self_attention": lambda module, tokens: module(tokens, tokens, tokens),
    }
    for name, fn in reference.items():
        monkeypatch.setattr(_blocks, name, fn)
        if hasattr(_uvit, name):
            monkeypatch.setattr(_uvit, name, fn)
    # GroupNorm then FiLM applied in turn, each on the feature map.
    monkeypatch.setattr(_blocks.FiLM, "after", lambda film, norm, x, e: film(norm(x), e))
    monkeypatch.setattr(_compile, "compiler_options", lambda program="train": None)
    monkeypatch.setattr(_recipe, "batch_groups", lambda batch: 1)


def test_fast_layers_equal_equinox_layers():
    from spectral_diffusion._nets._blocks import dense, mlp, self_attention

    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (2, 5, 12))
    linear = eqx.nn.Linear(12, 7, key=keys[1])
    module = eqx.nn.MLP(12, 6, 24, depth=2, activation=jax.nn.gelu, key=keys[2])
    attention = eqx.nn.MultiheadAttention(3, 12, key=keys[3])
    np.testing.assert_allclose(dense(linear, x), jax.vmap(jax.vmap(linear))(x), atol=1e-6)
    np.testing.assert_allclose(mlp(module, x), jax.vmap(jax.vmap(module))(x), atol=1e-6)
    np.testing.assert_allclose(
        self_attention(attention, x[0]), attention(x[0], x[0], x[0]), atol=1e-6
    )


def test_group_norm_equals_equinox_group_norm():
    # 64 channels: 32 groups of 2, so the per-group mean is shared across channels; an
    # offset mean and a non-trivial affine map, which the folded scale/shift must keep.
    from spectral_diffusion._nets._blocks import GroupNorm

    keys = jax.random.split(jax.random.key(1), 3)
    x = 3.0 + 2.0 * jax.random.normal(keys[0], (6, 5, 64))
    weight, bias = jax.random.normal(keys[1], (64,)), jax.random.normal(keys[2], (64,))
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), GroupNorm(64), (weight, bias))
    reference = eqx.tree_at(
        lambda n: (n.weight, n.bias), eqx.nn.GroupNorm(norm.groups, 64), (weight, bias)
    )
    expected = jnp.transpose(reference(jnp.transpose(x, (2, 0, 1))), (1, 2, 0))
    np.testing.assert_allclose(norm(x), expected, atol=1e-5)


def test_film_after_group_norm_equals_the_two_in_turn():
    # The folded per-channel scale and shift, and the barrier's custom VJP: values and
    # gradients (with respect to the input, both layers' parameters and the embedding)
    # equal GroupNorm then FiLM on the feature map, under vmap as in the networks.
    from spectral_diffusion._nets._blocks import FiLM, GroupNorm

    keys = jax.random.split(jax.random.key(2), 5)
    x = 1.5 + 2.0 * jax.random.normal(keys[0], (3, 4, 5, 64))
    embedding = jax.random.normal(keys[1], (3, 8))
    norm = eqx.tree_at(
        lambda n: (n.weight, n.bias),
        GroupNorm(64),
        (jax.random.normal(keys[2], (64,)), jax.random.normal(keys[3], (64,))),
    )
    film = FiLM(8, 64, key=keys[4])
    film = eqx.tree_at(lambda f: f.linear.weight, film, jax.random.normal(keys[4], (128, 8)))

    def folded(norm, film, x, e):
        return film.after(norm, x, e)

    def in_turn(norm, film, x, e):
        return film(norm(x), e)

    def outputs_and_gradients(fn):
        def loss(args):
            out = jax.vmap(fn, in_axes=(None, None, 0, 0))(*args)
            return jnp.sum(jnp.sin(out)), out

        grads, out = eqx.filter_jit(eqx.filter_grad(loss, has_aux=True))((norm, film, x, embedding))
        return out, grads

    (got_out, got), (want_out, want) = outputs_and_gradients(folded), outputs_and_gradients(in_turn)
    assert float(jnp.std(want_out)) > 1.0  # FiLM does modulate: not the identity
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-5)
    assert len(leaves(got)) == 6  # both layers' weight and bias, x and the embedding
    for a, b in zip(leaves(got), leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_train_step_loss_curve_equals_the_equinox_formulation(monkeypatch):
    config = dataclasses.replace(
        TINY,
        data=dataclasses.replace(TINY.data, batch_size=16),
        model=dataclasses.replace(
            TINY.model, kwargs=dict(stage_channels=(8, 16), dim=16, depth=2, num_heads=2)
        ),
    )
    source = data_source(config)

    def curve():
        state = init_state(config, source.num_classes)
        step = make_train_step(Recipe(config, source), source.num_classes)
        losses = []
        for i in range(5):
            batch = (16 * i + np.arange(16)) % len(source)
            images, labels = jnp.asarray(source.images[batch]), jnp.asarray(source.labels[batch])
            state, metrics = step(state, images, labels, jax.random.key(i))
            losses.append(float(metrics["loss"]))
        return np.array(losses), state

    # The step as on one CPU device, batch 16 in two groups (the test session has four
    # host devices, where the trainer keeps one group).
    monkeypatch.setattr(_recipe, "batch_groups", lambda batch: 2)
    fast, fast_state = curve()
    _equinox_formulation(monkeypatch)
    reference, reference_state = curve()
    assert len(set(fast.tolist())) == 5  # the loss moves: a real curve
    np.testing.assert_allclose(fast, reference, rtol=1e-5)
    # Parameters: Adam divides near-zero gradients by their own scale, so float
    # rounding can move a weight by a fraction of one step (lr 3e-3); a wrong layer
    # would move them by whole steps.
    pairs = zip(leaves(fast_state.denoiser), leaves(reference_state.denoiser), strict=True)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs) < 1e-3
