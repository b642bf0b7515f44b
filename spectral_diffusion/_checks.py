"""Input validation at the boundary where users call in.

Two kinds of error (as in diffrax): a `ValueError` naming the argument when the value
is known at trace time (Python numbers, concrete arrays), and `equinox.error_if` when
the value is only known at run time (inside `jit` or `vmap`), so a traced NaN image
still stops the program with a message instead of producing a NaN picture.
"""

import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool


def _concrete_bool(pred: Bool[ArrayLike, ""]) -> bool | None:
    """`bool(pred)` when `pred` is known now; `None` when it is traced."""
    try:
        return bool(pred)
    except jax.errors.ConcretizationTypeError:
        return None


def fail_if(x: ArrayLike, pred: Bool[ArrayLike, ""], message: str) -> ArrayLike:
    """Raise `ValueError(message)` if `pred` holds, at trace time when possible.

    Returns `x` unchanged when `pred` is concrete, or threaded through
    `equinox.error_if` when it is traced so that the check cannot be optimised away.
    """
    known = _concrete_bool(pred)
    if known is None:
        return eqx.error_if(x, pred, message)
    if known:
        raise ValueError(message)
    return x


def check_finite(x: ArrayLike, name: str) -> Array:
    x = jnp.asarray(x)
    return fail_if(x, ~jnp.all(jnp.isfinite(x)), f"`{name}` contains NaN or inf values.")


def check_in_range(
    x: ArrayLike, name: str, value_range: tuple[float, float], tolerance: float
) -> Array:
    """Finite and within `value_range` up to `tolerance`."""
    x = check_finite(x, name)
    lo, hi = value_range
    outside = jnp.any((x < lo - tolerance) | (x > hi + tolerance))
    return fail_if(
        x,
        outside,
        f"`{name}` has values outside [{lo}, {hi}] (tolerance {tolerance}); images are "
        "expected in [-1, 1]. Rescale uint8 data with `x / 127.5 - 1`, or pass "
        "`value_range=None` to skip this check for data that is not an image.",
    )


def check_nonnegative(x: ArrayLike, name: str) -> Array:
    x = check_finite(x, name)
    return fail_if(x, jnp.any(x < 0), f"`{name}` must be non-negative (it is a power).")


def check_open_unit(value: float, name: str) -> None:
    """A Python scalar strictly between 0 and 1 (tolerances such as `eps_hi`)."""
    _require_number(value, name)
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{name}` must be a number in the open interval (0, 1), got {value!r}.")


def _require_number(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Number | np.ndarray | jax.Array):
        raise ValueError(f"`{name}` must be a number, got {value!r}.")


def check_positive(value: ArrayLike, name: str) -> ArrayLike:
    """A positive scalar (Python number or array, concrete or traced)."""
    _require_number(value, name)
    return fail_if(value, ~(jnp.asarray(value) > 0), f"`{name}` must be positive, got {value!r}.")


def check_min_ndim(x: ArrayLike, name: str, ndim: int, layout: str) -> None:
    shape = np.shape(x)
    if len(shape) < ndim:
        raise ValueError(
            f"`{name}` must have at least {ndim} dimensions {layout}, got shape {shape}."
        )


def check_channels_first(x: ArrayLike, name: str) -> None:
    """Refuse images with no channels, and images that look channels-last: a trailing
    axis of 1, 3 or 4 behind two larger axes, e.g. `skimage.data.astronaut()`'s
    `(512, 512, 3)`, which would silently be read as 512 channels of 512 x 3 pixels."""
    shape = np.shape(x)
    if len(shape) < 3:
        return
    if shape[-3] == 0:
        raise ValueError(f"`{name}` has 0 channels (shape {shape}); expected (..., C, H, W).")
    c, h, w = shape[-3:]
    if w in (1, 3, 4) and c > w and h > w:
        raise ValueError(
            f"`{name}` of shape {shape} looks channels-last (..., H, W, C); the library "
            f"takes channels first (..., C, H, W): pass `jnp.moveaxis({name}, -1, -3)`."
        )


def check_choice(value: object, name: str, choices: dict) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}, got {value!r}.")


def check_less(lo: ArrayLike, lo_name: str, hi: ArrayLike, hi_name: str) -> tuple:
    """`lo < hi` for scalars (Python numbers or arrays, concrete or traced)."""
    _require_number(lo, lo_name)
    _require_number(hi, hi_name)
    bad = ~(jnp.asarray(lo) < jnp.asarray(hi))
    message = f"`{lo_name}` must be smaller than `{hi_name}`, got {lo!r} and {hi!r}."
    return fail_if(lo, bad, message), fail_if(hi, bad, message)
