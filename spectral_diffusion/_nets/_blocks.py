"""Conditioning embedding, FiLM residual blocks and attention shared by the networks."""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._schedules import Schedule


class Conditioning(NamedTuple):
    r"""What the denoiser is conditioned on: $c = (y, \lambda(0), \lambda(1))$, plus
    $\lambda(t)$ passed separately. `label == num_classes` is the null class.

    Build it with [`spectral_diffusion.Conditioning.of`][] (the one place that says a
    schedule's conditioning is its end points); fields may carry batch axes.
    """

    label: Int[Array, "*batch"]
    logsnr_0: Float[Array, "*batch"]
    logsnr_1: Float[Array, "*batch"]

    @classmethod
    def of(cls, schedule: Schedule, label: ArrayLike) -> "Conditioning":
        r"""The conditioning of examples with class `label` noised along `schedule`:
        $(y, \lambda(0), \lambda(1))$.

        **Arguments:**

        - `schedule`: one [`spectral_diffusion.Schedule`][], or a batched
            [`spectral_diffusion.PiecewiseLinear`][] (one per example).
        - `label`: class labels, broadcast against the schedule's batch shape; pass
            the null class `num_classes` for the unconditional branch.
        """
        # Both ends in one evaluation at t = (0, 1): the form training has always
        # used, so conditioning values are bit-identical to earlier runs.
        batch = schedule.batch_shape
        ends = schedule.logsnr(jnp.array([0.0, 1.0]).reshape(2, *(1,) * len(batch)))
        label = jnp.asarray(label)
        shape = jnp.broadcast_shapes(label.shape, ends.shape[1:])
        return cls(*(jnp.broadcast_to(v, shape) for v in (label, ends[0], ends[1])))

    def null(self, num_classes: int) -> "Conditioning":
        """The same schedule ends with the null class `num_classes` (classifier-free
        guidance's unconditional branch, and label dropout in training)."""
        return self._replace(label=jnp.full_like(self.label, num_classes))


class NullClass(eqx.Module):
    """Maps a [`spectral_diffusion.Conditioning`][] to its null-class version: the
    default unconditional branch of [`spectral_diffusion.guided`][]."""

    num_classes: int = eqx.field(static=True)

    def __call__(self, cond: Conditioning) -> Conditioning:
        return cond.null(self.num_classes)


#: Frequencies of the sinusoidal logSNR embedding span periods of ~0.6 to ~600 nats:
#: logSNRs live in about [-25, 25] and differ meaningfully by ~0.1.
_MIN_FREQUENCY, _MAX_FREQUENCY = 0.01, 10.0


def sinusoidal(value: Float[Array, ""], dim: int) -> Float[Array, " dim"]:
    frequencies = jnp.exp(
        jnp.linspace(math.log(_MIN_FREQUENCY), math.log(_MAX_FREQUENCY), dim // 2)
    )
    angles = value * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)])


class ConditionEmbedding(eqx.Module):
    """Class embedding (with a null class) + sinusoidal embeddings of the three logSNRs,
    mixed by an MLP into one vector that every block's FiLM reads."""

    classes: eqx.nn.Embedding
    mlp: eqx.nn.MLP
    sinusoid_dim: int = eqx.field(static=True)

    def __init__(self, num_classes: int, dim: int, *, key: PRNGKeyArray):
        class_key, mlp_key = jax.random.split(key)
        self.sinusoid_dim = dim
        self.classes = eqx.nn.Embedding(num_classes + 1, dim, key=class_key)
        self.mlp = eqx.nn.MLP(4 * dim, dim, dim, depth=2, activation=jax.nn.silu, key=mlp_key)

    @property
    def num_classes(self) -> int:
        """Classes, not counting the null class."""
        return self.classes.num_embeddings - 1

    def __call__(self, lam: Float[Array, ""], cond: Conditioning) -> Float[Array, " dim"]:
        parts = [self.classes(cond.label)] + [
            sinusoidal(v, self.sinusoid_dim) for v in (lam, cond.logsnr_0, cond.logsnr_1)
        ]
        return mlp(self.mlp, jnp.concatenate(parts))


def _per_channel(v: Float[Array, " C"], like: Float[Array, "... C"]) -> Float[Array, "... C"]:
    """`v` shaped to broadcast along the last (channel) axis of `like` (explicitly, so
    code runs under `jax_numpy_rank_promotion="raise"`)."""
    return v.reshape((1,) * (like.ndim - 1) + (-1,))


# equinox's layers map one vector: `jax.vmap(linear)(x)` batches `weight @ x` into a
# dot whose output is (out, tokens), which XLA then transposes back, fused into the
# following elementwise op (measured on the cpu preset: the transformer MLP's GELU ran
# 4x slower than its arithmetic needs, and the backward pass copied each activation
# once more to transpose it). The networks keep equinox's layers as parameter
# containers (same parameters, same checkpoints) and apply them here as
# `x @ weight.T` on the whole `(..., features)` array.


def dense(layer: eqx.nn.Linear, x: Float[Array, "... n"]) -> Float[Array, "... m"]:
    """`layer` applied along the last axis of `x`: `jax.vmap(layer)` for any batch
    shape, computed as one `x @ weight.T`."""
    out = jnp.matmul(x, layer.weight.T)
    return out if layer.bias is None else out + _per_channel(layer.bias, out)


def mlp(module: eqx.nn.MLP, x: Float[Array, "... n"]) -> Float[Array, "... m"]:
    """`module` (an `equinox.nn.MLP`) applied along the last axis of `x`."""
    for layer in module.layers[:-1]:
        x = module.activation(dense(layer, x))
    return module.final_activation(dense(module.layers[-1], x))


def self_attention(
    module: eqx.nn.MultiheadAttention, tokens: Float[Array, "tokens dim"]
) -> Float[Array, "tokens dim"]:
    """`module(tokens, tokens, tokens)` (an `equinox.nn.MultiheadAttention` without
    dropout), with every head in one pair of batched matmuls."""
    length, heads = tokens.shape[0], module.num_heads

    def split(layer):  # (heads, tokens, head dim)
        return jnp.transpose(dense(layer, tokens).reshape(length, heads, -1), (1, 0, 2))

    query, key, value = split(module.query_proj), split(module.key_proj), split(module.value_proj)
    logits = jnp.einsum("hsd,hSd->hsS", query / math.sqrt(query.shape[-1]), key)
    # The softmax with its normalisation applied after the product with the values
    # (head dim 32 per row instead of 64 tokens), heads first: the cpu preset's
    # attention forward 1.94 -> 0.83 ms, forward + backward 3.62 -> 3.22 ms (batch 32,
    # 64 tokens, 4 heads). Shifting by the row maximum leaves values and gradients as
    # they are; it only keeps `exp` finite.
    weights = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    attended = jnp.einsum("hsS,hSd->hsd", weights, value) / jnp.sum(weights, -1, keepdims=True)
    return dense(module.output_proj, jnp.transpose(attended, (1, 0, 2)).reshape(length, -1))


class FiLM(eqx.Module):
    r"""$h \mapsto h\,(1 + \gamma(c)) + \beta(c)$ per channel (channels last)."""

    linear: eqx.nn.Linear

    def __init__(self, embedding_dim: int, channels: int, *, key: PRNGKeyArray):
        # Start as the identity: gamma = beta = 0.
        self.linear = zeroed(
            eqx.nn.Linear(embedding_dim, 2 * channels, key=key),
            lambda layer: (layer.weight, layer.bias),
        )

    def __call__(
        self, h: Float[Array, "... C"], embedding: Float[Array, " E"]
    ) -> Float[Array, "... C"]:
        gamma, beta = self.modulation(embedding)
        return h * (1.0 + _per_channel(gamma, h)) + _per_channel(beta, h)

    def modulation(
        self, embedding: Float[Array, " E"]
    ) -> tuple[Float[Array, " C"], Float[Array, " C"]]:
        r"""$(\gamma(c), \beta(c))$, one value per channel each."""
        gamma, beta = jnp.split(dense(self.linear, embedding), 2)
        return gamma, beta

    def after(
        self, norm: "GroupNorm", x: Float[Array, "... C"], embedding: Float[Array, " E"]
    ) -> Float[Array, "... C"]:
        """`self(norm(x), embedding)`, with the normalisation and the modulation folded
        into one per-channel scale and shift: the feature map gets one multiply-add."""
        scale, shift = norm.scale_shift(x)
        gamma, beta = self.modulation(embedding)
        return channel_affine(x, scale * (1.0 + gamma), shift * (1.0 + gamma) + beta)


# The networks' interface is channels first, `(C, H, W)`, as equinox.nn expects; inside,
# every feature map is channels last, `(H, W, C)`, transposed once on the way in and
# once on the way out. XLA:CPU runs channels-first convolutions inside loop bodies
# about 10x slower than channels-last ones (jax-ml/jax#12868; every sampler is a
# loop), and transposing around each convolution instead cost a sixth of a training
# step in layout copies (measured on the cpu preset).


def to_channels_last(x: Float[Array, "C H W"]) -> Float[Array, "H W C"]:
    return jnp.transpose(x, (1, 2, 0))


def to_channels_first(x: Float[Array, "H W C"]) -> Float[Array, "C H W"]:
    return jnp.transpose(x, (2, 0, 1))


class Conv2d(eqx.Module):
    """A 'same' 2-D convolution of one channels-last `(H, W, C)` feature map."""

    weight: Float[Array, "kh kw c_in c_out"]
    bias: Float[Array, " c_out"]

    def __init__(self, c_in: int, c_out: int, kernel: int, *, key: PRNGKeyArray):
        reference = eqx.nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, key=key)
        self.weight = jnp.transpose(reference.weight, (2, 3, 1, 0))
        self.bias = reference.bias[:, 0, 0]

    def __call__(self, x: Float[Array, "H W C"]) -> Float[Array, "H W D"]:
        out = jax.lax.conv_general_dilated(
            x[None],
            self.weight,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )[0]
        return out + _per_channel(self.bias, out)


def _groups(channels: int) -> int:
    return math.gcd(channels, 32)


class GroupNorm(eqx.Module):
    """Group normalisation of a channels-last `(..., C)` feature map, with a per-channel
    affine map (initialised to the identity, as `equinox.nn.GroupNorm`)."""

    weight: Float[Array, " C"]
    bias: Float[Array, " C"]
    groups: int = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(self, channels: int, *, eps: float = 1e-5):
        self.groups = _groups(channels)
        self.eps = eps
        self.weight = jnp.ones(channels)
        self.bias = jnp.zeros(channels)

    def __call__(self, x: Float[Array, "... C"]) -> Float[Array, "... C"]:
        return channel_affine(x, *self.scale_shift(x))

    def scale_shift(
        self, x: Float[Array, "... C"]
    ) -> tuple[Float[Array, " C"], Float[Array, " C"]]:
        """The per-channel `(scale, shift)` with `self(x) == x * scale + shift`."""
        channels = x.shape[-1]
        flat = x.reshape(-1, channels)

        def group_mean(values):
            # Positions first, then channels within a group: both reductions run along
            # contiguous memory (one strided reduction over (positions, group members)
            # made the backward pass 3x slower on CPU).
            per_channel = jnp.mean(values, axis=0).reshape(self.groups, -1)
            return jnp.repeat(jnp.mean(per_channel, axis=1), channels // self.groups)

        mean = group_mean(flat)
        variance = group_mean((flat - mean[None]) ** 2)
        # The normalisation and the affine map folded into one per-channel scale and
        # shift, computed on (C,) vectors, so the feature map gets one multiply-add (the
        # unfolded chain, fused with the FiLM and SiLU after it, cost the cpu preset's
        # step 4%: 201.5 vs 192.9 ms, see the Benchmarks page). Parameters unchanged.
        scale = self.weight * jax.lax.rsqrt(variance + self.eps)
        return scale, self.bias - mean * scale


def channel_affine(
    x: Float[Array, "... C"], scale: Float[Array, " C"], shift: Float[Array, " C"]
) -> Float[Array, "... C"]:
    """`x * scale + shift` per channel, with `scale` and `shift` computed once, as
    vectors, before the feature map is touched."""
    scale, shift = vector_barrier(jnp.stack([scale, shift]))
    return x * _per_channel(scale, x) + _per_channel(shift, x)


def zeroed(module, where):
    """`module` with the arrays `where` selects set to zero (blocks start as identities)."""
    return eqx.tree_at(where, module, replace_fn=jnp.zeros_like)


class OutputHead(eqx.Module):
    """GroupNorm -> SiLU -> zero-initialised conv: a fresh network outputs exactly 0."""

    norm: GroupNorm
    conv: Conv2d

    def __init__(self, channels: int, out_channels: int, *, key: PRNGKeyArray):
        self.norm = GroupNorm(channels)
        self.conv = zeroed(Conv2d(channels, out_channels, 3, key=key), lambda c: (c.weight, c.bias))

    def __call__(self, h: Float[Array, "H W C"]) -> Float[Array, "H W D"]:
        return self.conv(jax.nn.silu(self.norm(h)))


class ResBlock(eqx.Module):
    """GroupNorm -> FiLM -> SiLU -> conv, twice, with dropout between and a residual
    (channels last)."""

    norm1: GroupNorm
    film1: FiLM
    conv1: Conv2d
    norm2: GroupNorm
    film2: FiLM
    conv2: Conv2d
    skip: Conv2d | None
    dropout: eqx.nn.Dropout

    def __init__(self, c_in: int, c_out: int, embedding_dim: int, dropout: float, *, key):
        keys = jax.random.split(key, 5)
        self.norm1 = GroupNorm(c_in)
        self.film1 = FiLM(embedding_dim, c_in, key=keys[0])
        self.conv1 = Conv2d(c_in, c_out, 3, key=keys[1])
        self.norm2 = GroupNorm(c_out)
        self.film2 = FiLM(embedding_dim, c_out, key=keys[2])
        # Zero-initialised last conv: each block starts as the identity.
        self.conv2 = zeroed(Conv2d(c_out, c_out, 3, key=keys[3]), lambda c: c.weight)
        self.skip = None if c_in == c_out else Conv2d(c_in, c_out, 1, key=keys[4])
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x, embedding, *, key: PRNGKeyArray | None, inference: bool):
        h = self.conv1(jax.nn.silu(self.film1.after(self.norm1, x, embedding)))
        h = jax.nn.silu(self.film2.after(self.norm2, h, embedding))
        h = self.conv2(self.dropout(h, key=key, inference=inference or key is None))
        return h + (x if self.skip is None else self.skip(x))


class Attention(eqx.Module):
    """Self-attention over the spatial positions of a channels-last `(H, W, C)` map."""

    norm: GroupNorm
    attention: eqx.nn.MultiheadAttention

    def __init__(self, channels: int, num_heads: int, *, key):
        self.norm = GroupNorm(channels)
        self.attention = zeroed(
            eqx.nn.MultiheadAttention(num_heads, channels, key=key), lambda a: a.output_proj.weight
        )

    def __call__(self, x: Float[Array, "H W C"]) -> Float[Array, "H W C"]:
        tokens = self.norm(x).reshape(-1, x.shape[-1])
        return x + self_attention(self.attention, tokens).reshape(x.shape)


def downsample(x: Float[Array, "H W C"]) -> Float[Array, "h w C"]:
    height, width, channels = x.shape
    return x.reshape(height // 2, 2, width // 2, 2, channels).mean(axis=(1, 3))


def upsample(x: Float[Array, "h w C"]) -> Float[Array, "H W C"]:
    return jnp.repeat(jnp.repeat(x, 2, axis=0), 2, axis=1)


def _identity_matmul(x):
    eye = jnp.eye(x.shape[-1], dtype=x.dtype)
    return jnp.matmul(x, eye, precision=jax.lax.Precision.HIGHEST)


@jax.custom_vjp
def gradient_barrier(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """The identity, whose cotangent XLA must compute before using it.

    The backward pass multiplies the cotangent by an identity matrix (exact in float32
    at `Precision.HIGHEST`; a negligible matmul). Without it XLA:CPU fuses the residual
    stream's gradient through every later transformer block into each weight-gradient
    transpose, recomputing the chain per block, so the backward pass grows
    quadratically with depth (measured: 13% of a cpu-preset training step).
    `lax.optimization_barrier` does not help: XLA:CPU removes it before fusion.
    """
    return x


def _barrier_fwd(x):
    return x, None


def _barrier_bwd(_, cotangent):
    return (_identity_matmul(cotangent),)


gradient_barrier.defvjp(_barrier_fwd, _barrier_bwd)


@jax.custom_vjp
def vector_barrier(x: Float[Array, "... C"]) -> Float[Array, "... C"]:
    """The identity, computed as a product with an identity matrix (exact in float32 at
    `Precision.HIGHEST`) both ways, so that XLA materialises `x` and its cotangent.

    Meant for small per-channel vectors about to be broadcast over a feature map.
    Without it XLA:CPU fuses the vectors' arithmetic into every element of the map's
    elementwise kernels, and the cotangents of that arithmetic into per-element
    reductions (measured on GroupNorm -> FiLM -> SiLU, batch 32 at 32x32x48: forward +
    backward 10.2 ms without, 4.1 ms with).
    """
    return _identity_matmul(x)


def _vector_barrier_fwd(x):
    return _identity_matmul(x), None


vector_barrier.defvjp(_vector_barrier_fwd, _barrier_bwd)  # the same backward pass


def split_key(key: PRNGKeyArray | None, num: int) -> list[PRNGKeyArray | None]:
    return [None] * num if key is None else list(jax.random.split(key, num))
