"""The library's own `filter_jit` (the train step's and the Reproduce sampler's): the
same values and output structure as `equinox.filter_jit`, one compilation per
argument signature, and the fallbacks for traced and unhashable static arguments; and
`in_threads`, which runs a batch's slices side by side on host threads."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spectral_diffusion._compile import (
    batch_groups,
    compiler_options,
    filter_jit,
    host_slices,
    host_threads,
    in_threads,
)


class _Unhashable:
    """A static leaf that cannot be a cache key."""

    __hash__ = None

    def __init__(self, scale: float):
        self.scale = scale


def _step(model, x, scale, name):
    """A model with static leaves (the MLP's activation functions), a Python float and
    a string, returning arrays, a Python value and the model (non-array leaves)."""
    y = jax.vmap(model)(x) * scale
    return {"y": y, "mean": jnp.mean(y), "name": name, "model": model}


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if eqx.is_array(left):
            np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
        else:
            assert left is right or left == right


def test_filter_jit_equals_equinox_filter_jit():
    model = eqx.nn.MLP(3, 2, 4, depth=1, activation=jax.nn.gelu, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    ours, theirs = filter_jit(_step), eqx.filter_jit(_step)
    out = ours(model, x, 0.5, "a")
    _assert_same(out, theirs(model, x, 0.5, "a"))
    assert out["name"] == "a" and out["model"].activation is jax.nn.gelu
    # A different static value is a different program, with its own output.
    _assert_same(ours(model, x, 2.0, "b"), theirs(model, x, 2.0, "b"))


def test_filter_jit_compiles_once_per_signature():
    fn = filter_jit(lambda x, k: (x * k, x.shape[0]))
    small, large = jnp.arange(3.0), jnp.arange(4.0)
    for _ in range(2):
        values, length = fn(small, 2)
        np.testing.assert_array_equal(values, [0.0, 2.0, 4.0])
        assert length == 3
    assert len(fn._programs) == 1
    values, length = fn(large, 2)
    assert length == 4 and values.shape == (4,)
    fn(small.astype(jnp.int32), 2)  # a new dtype: a new program
    assert len(fn._programs) == 3


def test_filter_jit_inside_jit_and_with_unhashable_static_leaves():
    fn = filter_jit(lambda x, s: x * s)
    x = jnp.arange(3.0)
    # Traced arguments (a user's own `jit`) take equinox's path; same values.
    np.testing.assert_array_equal(jax.jit(lambda x: fn(x, 3.0))(x), fn(x, 3.0))
    # A static leaf that cannot be hashed cannot key the cache: equinox's path, and its
    # error, as with `equinox.filter_jit` itself.
    scaled = filter_jit(lambda x, s: x * s.scale)
    with pytest.raises(ValueError, match="Non-hashable static arguments"):
        scaled(x, _Unhashable(3.0))
    assert not scaled._programs


def test_filter_jit_reports_a_failed_check_as_equinox_does():
    def positive(x):
        return eqx.error_if(x, jnp.any(x <= 0), "`x` must be positive.")

    fn = filter_jit(positive)
    np.testing.assert_array_equal(fn(jnp.ones(3)), jnp.ones(3))
    with pytest.raises(eqx.EquinoxRuntimeError, match="^`x` must be positive.$"):
        jax.block_until_ready(fn(-jnp.ones(3)))


def _scaled_rows(x, scale, offset):
    """Per-example arithmetic with a reduction inside each row, so slices that were
    mixed up or reordered would show."""
    return jax.vmap(lambda row, s: jnp.cumsum(row) * s)(x, scale) + offset


def test_in_threads_gives_the_same_values_as_one_call():
    fn = filter_jit(_scaled_rows)
    x = jax.random.normal(jax.random.key(0), (32, 5))
    scale = jnp.linspace(0.5, 2.0, 32)
    whole = fn(x, scale, 1.0)
    for threads in (1, 2, 4):
        parts = in_threads(fn, (x, scale, 1.0), (0, 0, None), threads)
        np.testing.assert_array_equal(parts, whole)
    # More slices than threads: each thread runs its share of the slices in turn.
    for threads, slices in ((1, 4), (2, 4), (2, 8), (4, 4)):
        parts = in_threads(fn, (x, scale, 1.0), (0, 0, None), threads, slices)
        np.testing.assert_array_equal(parts, whole)
    with pytest.raises(ValueError, match="`threads` 3 must divide the batch size 32"):
        in_threads(fn, (x, scale, 1.0), (0, 0, None), 3)
    with pytest.raises(ValueError, match="`slices` 6 must divide the batch size 32"):
        in_threads(fn, (x, scale, 1.0), (0, 0, None), 2, 6)
    with pytest.raises(ValueError, match="`slices` 3 must be a multiple of `threads` 2"):
        in_threads(fn, (x, scale, 1.0), (0, 0, None), 2, 3)


def test_threads_calling_at_once_share_one_compilation():
    traces = []

    def traced(x):
        traces.append(x.shape)
        return x * 2.0

    fn = filter_jit(traced)
    x = jnp.arange(16.0)
    np.testing.assert_array_equal(in_threads(fn, (x,), (0,), 4), x * 2.0)
    assert traces == [(4,)] and len(fn._programs) == 1


def test_in_threads_raises_a_failed_check_of_any_slice():
    fn = filter_jit(lambda x: eqx.error_if(x, jnp.any(x <= 0), "`x` must be positive."))
    x = jnp.ones(16).at[13].set(-1.0)  # in the last of two slices
    with pytest.raises(eqx.EquinoxRuntimeError, match="^`x` must be positive.$"):
        in_threads(fn, (x,), (0,), 2)


@pytest.mark.parametrize("program", ["train", "sample"])
def test_compiler_options_keep_the_values_of_convolutions_and_dots(program):
    # Each program's CPU options move kernels between YNNPACK and XLA's own (Eigen):
    # the same values up to float rounding, forward and backward, as XLA's defaults.
    options = compiler_options(program)
    assert options is not None  # this jaxlib knows the options, so they are exercised
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (8, 16, 16, 24))
    w = 0.1 * jax.random.normal(keys[1], (3, 3, 24, 16))
    m = 0.1 * jax.random.normal(keys[2], (16, 32))

    def layer(x, w, m):
        numbers = ("NHWC", "HWIO", "NHWC")
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers)
        return jnp.sum(jnp.tanh(y @ m) ** 2)

    value_and_grad = jax.value_and_grad(layer, argnums=(0, 1, 2))
    ours = jax.jit(value_and_grad, compiler_options=options)(x, w, m)
    theirs = jax.jit(value_and_grad)(x, w, m)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        # Float rounding of sums over 2,048 positions, on the scale of each array.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(b))))
    with pytest.raises(ValueError, match="`program` must be one of"):
        compiler_options("inference")


def test_host_threads_and_batch_groups_cut_slices_of_at_least_8(monkeypatch):
    # The suite runs on 4 host devices, where batches are split over the devices and
    # never over threads; one device is what a user's process has.
    assert host_threads(32) == 1 and batch_groups(32) == 1
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    # The train step's groups follow the same rule, from 4 or 2.
    assert [batch_groups(b) for b in (8, 12, 16, 24, 32, 64)] == [1, 1, 2, 2, 4, 4]
    for cores in (1, 2, 3, 4, 16):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        for batch in (1, 7, 8, 15, 16, 24, 32, 100):
            n = host_threads(batch)
            assert 1 <= n <= cores and batch % n == 0
            assert n == 1 or batch // n >= 8
        assert host_threads(15) == 1
        assert host_threads(32) == {1: 1, 2: 2, 3: 2, 4: 4, 16: 4}[cores]
        assert host_threads(100) == {1: 1, 2: 2, 3: 2, 4: 4, 16: 10}[cores]
        # Slices: the most of at least 8 examples, shared evenly among the threads.
        for batch in (1, 7, 8, 15, 16, 24, 32, 100):
            slices, threads = host_slices(batch)
            assert threads == host_threads(batch) and slices % threads == 0
            assert batch % slices == 0 and (slices == 1 or batch // slices >= 8)
        assert host_slices(32) == {1: (4, 1), 2: (4, 2), 3: (4, 2), 4: (4, 4), 16: (4, 4)}[cores]
        assert host_slices(100)[0] == {1: 10, 2: 10, 3: 10, 4: 4, 16: 10}[cores]
        assert host_slices(15) == (1, 1)


def test_reproduce_sampler_on_threads_equals_one_program(monkeypatch):
    import spectral_diffusion as sd
    from reproduce._sampling import _sample_batch, sample_batch

    monkeypatch.setattr(jax, "device_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert host_slices(32) == (4, 2)  # two threads, two slices of 8 each in turn
    images = jax.random.uniform(jax.random.key(0), (32, 3, 8, 8), minval=-1.0, maxval=1.0)
    schedules = sd.spectral_schedule(sd.rapsd(images))
    cond = sd.Conditioning.of(schedules, jnp.arange(32) % 3)
    z1 = jax.random.normal(jax.random.key(1), images.shape)
    denoise = eqx.nn.Conv2d(3, 3, 3, padding=1, key=jax.random.key(2))

    def x_hat(z, lam, cond):  # a denoiser that uses every input
        return jnp.tanh(denoise(z) * jax.nn.sigmoid(lam) + cond.logsnr_0 * 1e-2)

    threaded = sample_batch(x_hat, schedules.knots, cond, z1, 4)
    whole = _sample_batch()(x_hat, schedules.knots, cond, z1, 4, None)
    np.testing.assert_array_equal(threaded, whole)
