"""Conditioning embedding, FiLM residual blocks and attention shared by the networks."""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray


class Conditioning(NamedTuple):
    r"""What the denoiser is conditioned on: $c = (y, \lambda(0), \lambda(1))$, plus
    $\lambda(t)$ passed separately. `label == num_classes` is the null class."""

    label: Int[Array, ""]
    logsnr_0: Float[Array, ""]
    logsnr_1: Float[Array, ""]


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

    def __call__(self, lam: Float[Array, ""], cond: Conditioning) -> Float[Array, " dim"]:
        parts = [self.classes(cond.label)] + [
            sinusoidal(v, self.sinusoid_dim) for v in (lam, cond.logsnr_0, cond.logsnr_1)
        ]
        return self.mlp(jnp.concatenate(parts))


class FiLM(eqx.Module):
    r"""$h \mapsto h\,(1 + \gamma(c)) + \beta(c)$ per channel (channels first)."""

    linear: eqx.nn.Linear

    def __init__(self, embedding_dim: int, channels: int, *, key: PRNGKeyArray):
        # Start as the identity: gamma = beta = 0.
        self.linear = zeroed(
            eqx.nn.Linear(embedding_dim, 2 * channels, key=key),
            lambda layer: (layer.weight, layer.bias),
        )

    def __call__(
        self, h: Float[Array, "C ..."], embedding: Float[Array, " E"]
    ) -> Float[Array, "C ..."]:
        gamma, beta = jnp.split(self.linear(embedding), 2)
        expand = (slice(None),) + (None,) * (h.ndim - 1)
        return h * (1.0 + gamma[expand]) + beta[expand]


class Conv2d(eqx.Module):
    """A 'same' 2-D convolution of one `(C, H, W)` image, computed channels-last.

    XLA:CPU runs channels-first convolutions inside loop bodies about 10x slower than
    outside them (jax-ml/jax#12868), and every sampler is a loop; channels-last
    convolutions do not have the problem (measured: 3.0 ms vs 50 ms per call in a
    `lax.scan`, 32 x 32 x 32 x 32). The interface stays channels-first.
    """

    weight: Float[Array, "kh kw c_in c_out"]
    bias: Float[Array, " c_out"]

    def __init__(self, c_in: int, c_out: int, kernel: int, *, key: PRNGKeyArray):
        reference = eqx.nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, key=key)
        self.weight = jnp.transpose(reference.weight, (2, 3, 1, 0))
        self.bias = reference.bias[:, 0, 0]

    def __call__(self, x: Float[Array, "C H W"]) -> Float[Array, "D H W"]:
        out = jax.lax.conv_general_dilated(
            jnp.transpose(x, (1, 2, 0))[None],
            self.weight,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )[0]
        return jnp.transpose(out, (2, 0, 1)) + self.bias[:, None, None]


def _groups(channels: int) -> int:
    return math.gcd(channels, 32)


def zeroed(module, where):
    """`module` with the arrays `where` selects set to zero (blocks start as identities)."""
    return eqx.tree_at(where, module, replace_fn=jnp.zeros_like)


class OutputHead(eqx.Module):
    """GroupNorm -> SiLU -> zero-initialised conv: a fresh network outputs exactly 0."""

    norm: eqx.nn.GroupNorm
    conv: Conv2d

    def __init__(self, channels: int, out_channels: int, *, key: PRNGKeyArray):
        self.norm = eqx.nn.GroupNorm(_groups(channels), channels)
        self.conv = zeroed(Conv2d(channels, out_channels, 3, key=key), lambda c: (c.weight, c.bias))

    def __call__(self, h: Float[Array, "C H W"]) -> Float[Array, "D H W"]:
        return self.conv(jax.nn.silu(self.norm(h)))


class ResBlock(eqx.Module):
    """GroupNorm -> FiLM -> SiLU -> conv, twice, with dropout between and a residual."""

    norm1: eqx.nn.GroupNorm
    film1: FiLM
    conv1: Conv2d
    norm2: eqx.nn.GroupNorm
    film2: FiLM
    conv2: Conv2d
    skip: Conv2d | None
    dropout: eqx.nn.Dropout

    def __init__(self, c_in: int, c_out: int, embedding_dim: int, dropout: float, *, key):
        keys = jax.random.split(key, 5)
        self.norm1 = eqx.nn.GroupNorm(_groups(c_in), c_in)
        self.film1 = FiLM(embedding_dim, c_in, key=keys[0])
        self.conv1 = Conv2d(c_in, c_out, 3, key=keys[1])
        self.norm2 = eqx.nn.GroupNorm(_groups(c_out), c_out)
        self.film2 = FiLM(embedding_dim, c_out, key=keys[2])
        # Zero-initialised last conv: each block starts as the identity.
        self.conv2 = zeroed(Conv2d(c_out, c_out, 3, key=keys[3]), lambda c: c.weight)
        self.skip = None if c_in == c_out else Conv2d(c_in, c_out, 1, key=keys[4])
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x, embedding, *, key: PRNGKeyArray | None, inference: bool):
        h = self.conv1(jax.nn.silu(self.film1(self.norm1(x), embedding)))
        h = jax.nn.silu(self.film2(self.norm2(h), embedding))
        h = self.conv2(self.dropout(h, key=key, inference=inference or key is None))
        return h + (x if self.skip is None else self.skip(x))


class Attention(eqx.Module):
    """Self-attention over the spatial positions of a `(C, H, W)` feature map."""

    norm: eqx.nn.GroupNorm
    attention: eqx.nn.MultiheadAttention

    def __init__(self, channels: int, num_heads: int, *, key):
        self.norm = eqx.nn.GroupNorm(_groups(channels), channels)
        self.attention = zeroed(
            eqx.nn.MultiheadAttention(num_heads, channels, key=key), lambda a: a.output_proj.weight
        )

    def __call__(self, x: Float[Array, "C H W"]) -> Float[Array, "C H W"]:
        channels, height, width = x.shape
        tokens = self.norm(x).reshape(channels, -1).T
        out = self.attention(tokens, tokens, tokens)
        return x + out.T.reshape(channels, height, width)


def downsample(x: Float[Array, "C H W"]) -> Float[Array, "C h w"]:
    channels, height, width = x.shape
    return x.reshape(channels, height // 2, 2, width // 2, 2).mean(axis=(2, 4))


def upsample(x: Float[Array, "C h w"]) -> Float[Array, "C H W"]:
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def split_key(key: PRNGKeyArray | None, num: int) -> list[PRNGKeyArray | None]:
    return [None] * num if key is None else list(jax.random.split(key, num))
