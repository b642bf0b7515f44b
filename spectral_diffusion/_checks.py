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


def concrete_bool(pred: Bool[ArrayLike, ""]) -> bool | None:
    """`bool(pred)` when `pred` is known now; `None` when it is traced."""
    try:
        return bool(pred)
    except jax.errors.ConcretizationTypeError:
        return None


def fail_if(x: ArrayLike, pred: Bool[ArrayLike, ""], message: str) -> ArrayLike:
    """Raise `ValueError(message)` if `pred` holds, at trace time when possible.

    Returns `x` unchanged when `pred` is concrete. When it is traced, `x` comes back
    tied to an `equinox.error_if` check so that the check cannot be optimised away.
    """
    known = concrete_bool(pred)
    if known is None:
        return _tied(x, pred, message)
    if known:
        raise ValueError(message)
    return x


def _tied(x: ArrayLike, pred: Bool[ArrayLike, ""], message: str) -> Array:
    """`x`, bit for bit, computed after an `equinox.error_if` check of `pred`.

    The check threads a scalar zero, not `x`, and `x` gets that zero added: negative
    zero for floating `x`, the one value whose sum leaves every float as it was, -0.0
    and NaN included (subnormals aside, on backends that flush them to zero, as
    XLA:CPU does in every operation). Threading `x` itself through the check's
    `lax.cond` would put all of `x` on one device under `jax.sharding`: XLA places a
    conditional holding a host callback on device 0, so a batch-sharded `x` was
    gathered there and split again on every call (XLA warned of an "involuntary full
    rematerialization"); a scalar costs one broadcast. It also spares the copy of `x`
    the conditional wrote. (Under `EQX_ON_ERROR=nan` a floating `x` still becomes
    NaN: the zero does.)
    """
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        return x | eqx.error_if(jnp.zeros((), jnp.bool_), pred, message)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        zero = complex(-0.0, -0.0)
    else:
        zero = -0.0 if jnp.issubdtype(x.dtype, jnp.floating) else 0
    return x + eqx.error_if(jnp.asarray(zero, x.dtype), pred, message)


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


def check_open_unit(value: object, name: str) -> float:
    """A real scalar strictly between 0 and 1 (tolerances such as `eps_hi`)."""
    return as_real(value, name, low=0.0, high=1.0, open_low=True, open_high=True)


def _require_number(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Number | np.ndarray | jax.Array):
        raise ValueError(f"`{name}` must be a number, got {value!r}.")


def _show(value: object) -> str:
    """`value` as users wrote it: `8` for `np.int64(8)` or a 0-d array of 8, so a
    message never reads "must be an integer, got np.int64(8)"."""
    if isinstance(value, numbers.Number | np.ndarray | jax.Array) and np.ndim(value) == 0:
        try:
            return repr(np.asarray(value).item())
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
            return "a traced value"
    return repr(value)


def as_integer(value: object, name: str, minimum: int, *, alternative: str = "") -> int:
    """A Python int from anything integral users pass for a count or size: Python,
    numpy or JAX integers and 0-d integer arrays (not `bool`, not floats).
    `alternative` names another accepted value for the message, e.g. `" or None"`."""
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, np.ndarray | jax.Array | np.generic)
        and np.ndim(value) == 0
        and jnp.issubdtype(value.dtype, jnp.integer)
    )
    if isinstance(value, bool | np.bool_) or not integral:
        raise ValueError(
            f"`{name}` must be an integer >= {minimum}{alternative}, got {_show(value)}."
        )
    try:
        number = int(value)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
        raise ValueError(
            f"`{name}` sets a shape or a loop length, so it must be a concrete integer, not a "
            "traced value: mark it static (`jax.jit(..., static_argnames=...)` or "
            "`equinox.filter_jit`, which keeps Python ints static)."
        ) from None
    if number < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}{alternative}, got {number}.")
    return number


def as_real(
    value: object,
    name: str,
    *,
    low: float = -np.inf,
    high: float = np.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """A Python float from a real scalar users pass (Python, numpy or JAX scalar, 0-d
    array), finite and within the stated interval."""
    lo_bracket, hi_bracket = "(" if open_low else "[", ")" if open_high else "]"
    interval = f"{lo_bracket}{low:g}, {high:g}{hi_bracket}"
    if np.isinf(low) and np.isinf(high):
        expected = "a finite number"
    else:
        expected = f"a number in {interval}"
    real = isinstance(value, numbers.Real) or (
        isinstance(value, np.ndarray | jax.Array | np.generic)
        and np.ndim(value) == 0
        and (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer))
    )
    if isinstance(value, bool | np.bool_) or not real:
        raise ValueError(f"`{name}` must be {expected}, got {_show(value)}.")
    try:
        number = float(value)
    except jax.errors.ConcretizationTypeError:
        raise ValueError(
            f"`{name}` must be a concrete number (it is checked and used on the host), "
            "not a traced value."
        ) from None
    inside = (
        np.isfinite(number)
        and (number > low if open_low else number >= low)
        and (number < high if open_high else number <= high)
    )
    if not inside:
        raise ValueError(f"`{name}` must be {expected}, got {_show(value)}.")
    return number


def _host(value: object) -> np.ndarray | None:
    """`value` as a numpy array when it is a Python or numpy value, else `None`.
    Checks on host values are decided with numpy, even inside `jit`, where every
    `jnp` operation is staged out and its result would only be known at run time."""
    return None if isinstance(value, jax.Array) else np.asarray(value)


def check_positive(value: ArrayLike, name: str) -> ArrayLike:
    """A positive, finite scalar (Python number or array, concrete or traced)."""
    _require_number(value, name)
    xp = jnp if _host(value) is None else np
    array = xp.asarray(value)
    bad = ~xp.all((array > 0) & xp.isfinite(array))
    return fail_if(value, bad, f"`{name}` must be positive and finite, got {_show(value)}.")


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


def check_knots(knots: ArrayLike) -> Array:
    """Schedule knots `(..., K + 1)`: at least 2 on the last axis, floating (integers
    become float32), finite and strictly decreasing; threaded through
    `equinox.error_if` when traced."""
    check_min_ndim(knots, "knots", 1, "(..., K + 1)")
    knots = jnp.asarray(knots)
    if knots.shape[-1] < 2:
        raise ValueError(f"`knots` needs at least 2 knots on its last axis, got {knots.shape}.")
    if not jnp.issubdtype(knots.dtype, jnp.floating):
        knots = knots.astype(jnp.float32)
    bad = ~jnp.all(jnp.isfinite(knots)) | jnp.any(jnp.diff(knots, axis=-1) >= 0)
    return fail_if(knots, bad, "`knots` must be finite and strictly decreasing.")


def check_choice(value: object, name: str, choices: dict) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}, got {value!r}.")


def check_less(lo: ArrayLike, lo_name: str, hi: ArrayLike, hi_name: str) -> tuple:
    """`lo < hi` for scalars (Python numbers or arrays, concrete or traced)."""
    _require_number(lo, lo_name)
    _require_number(hi, hi_name)
    host_lo, host_hi = _host(lo), _host(hi)
    xp = np if host_lo is not None and host_hi is not None else jnp
    lo_array, hi_array = xp.asarray(lo), xp.asarray(hi)
    infinite = ~(xp.isfinite(lo_array) & xp.isfinite(hi_array))
    message = f"`{lo_name}` and `{hi_name}` must be finite, got {_show(lo)} and {_show(hi)}."
    lo, hi = fail_if(lo, infinite, message), fail_if(hi, infinite, message)
    bad = ~(lo_array < hi_array)
    message = f"`{lo_name}` must be smaller than `{hi_name}`, got {_show(lo)} and {_show(hi)}."
    return fail_if(lo, bad, message), fail_if(hi, bad, message)


def check_time(t: ArrayLike) -> Array:
    """Times in [0, 1], the domain of every schedule (NaN refused); threaded through
    `equinox.error_if` when traced."""
    host = _host(t)
    if host is not None:  # decided now, at no run-time cost (the samplers' grids)
        outside = not np.all((host >= 0) & (host <= 1))
        t = jnp.asarray(t)
    else:
        outside = ~jnp.all((t >= 0) & (t <= 1))
    return fail_if(
        t,
        outside,
        "`t` must lie in [0, 1] (t = 0 is data, t = 1 is noise); got values outside it or NaN.",
    )
