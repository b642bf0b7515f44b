"""The library's own `filter_jit` (the train step's and the Reproduce sampler's): the
same values and output structure as `equinox.filter_jit`, one compilation per
argument signature, and the fallbacks for traced and unhashable static arguments."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spectral_diffusion._compile import filter_jit


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
