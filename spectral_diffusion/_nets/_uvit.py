"""simple diffusion's U-ViT: convolutional stages around a transformer at the lowest
resolution, with FiLM conditioning in every block."""

from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._compile import grouped
from ._blocks import (
    ConditionEmbedding,
    Conditioning,
    Conv2d,
    FiLM,
    OutputHead,
    ResBlock,
    dense,
    downsample,
    gradient_barrier,
    mlp,
    self_attention,
    split_key,
    to_channels_first,
    to_channels_last,
    upsample,
    zeroed,
)


class TransformerBlock(eqx.Module):
    """Pre-norm transformer block; both LayerNorms are modulated by FiLM (adaLN)."""

    norm1: eqx.nn.LayerNorm
    film1: FiLM
    attention: eqx.nn.MultiheadAttention
    norm2: eqx.nn.LayerNorm
    film2: FiLM
    mlp: eqx.nn.MLP
    dropout: eqx.nn.Dropout

    def __init__(self, dim: int, embedding_dim: int, num_heads: int, dropout: float, *, key):
        keys = jax.random.split(key, 4)
        self.norm1 = eqx.nn.LayerNorm(dim, use_weight=False, use_bias=False)
        self.film1 = FiLM(embedding_dim, dim, key=keys[0])
        self.attention = zeroed(
            eqx.nn.MultiheadAttention(num_heads, dim, key=keys[1]), lambda a: a.output_proj.weight
        )
        self.norm2 = eqx.nn.LayerNorm(dim, use_weight=False, use_bias=False)
        self.film2 = FiLM(embedding_dim, dim, key=keys[2])
        self.mlp = zeroed(
            eqx.nn.MLP(dim, dim, 4 * dim, depth=1, activation=jax.nn.gelu, key=keys[3]),
            lambda m: m.layers[-1].weight,
        )
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, tokens, embedding, *, key):
        modulate = lambda film, norm, x: film(jax.vmap(norm)(x), embedding)  # noqa: E731
        h = modulate(self.film1, self.norm1, tokens)
        tokens = tokens + self_attention(self.attention, h)
        h = mlp(self.mlp, modulate(self.film2, self.norm2, tokens))
        return tokens + self.dropout(h, key=key, inference=key is None)


def _transformer_section(parts: tuple, h, embedding, key):
    """The U-ViT's bottom: `h` as tokens through the transformer, back as a residual."""
    to_tokens, position, transformer, from_tokens = parts
    tokens = dense(to_tokens, h.reshape(-1, h.shape[-1])) + position
    for block, block_key in zip(transformer, split_key(key, len(transformer))):
        tokens = gradient_barrier(block(tokens, embedding, key=block_key))
    return h + dense(from_tokens, tokens).reshape(h.shape)


class UViT(eqx.Module):
    r"""U-ViT on one `(C, H, W)` image, conditioned on $(y, \lambda_t, \lambda_0, \lambda_1)$.

    Convolutional residual stages downsample to `image_size / 2^(len(stage_channels)-1)`,
    a transformer of `depth` blocks runs on the tokens there (dropout in the
    transformer, where simple diffusion regularises), and mirrored stages with skip
    connections upsample back. Matmul-heavy, which suits CPUs and accelerators alike.
    """

    stem: Conv2d
    embedding: ConditionEmbedding
    down: list
    to_tokens: eqx.nn.Linear
    position: Float[Array, "tokens dim"]
    transformer: list
    from_tokens: eqx.nn.Linear
    up: list
    head: OutputHead
    num_res_blocks: int = eqx.field(static=True)
    # `batch_loss` computes this network's `grouped` section in groups, not the whole
    # per-example loss.
    _groups_inside: ClassVar[bool] = True

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 32,
        stage_channels: Sequence[int] = (64, 128),
        num_res_blocks: int = 1,
        dim: int = 256,
        depth: int = 4,
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int = 1,
        key: PRNGKeyArray,
    ):
        factor = 2 ** (len(stage_channels) - 1)
        if image_size % factor:
            raise ValueError(f"`image_size` {image_size} must be divisible by {factor}.")
        keys = iter(jax.random.split(key, 64))
        embed_dim = 4 * stage_channels[0]
        self.embedding = ConditionEmbedding(num_classes, embed_dim, key=next(keys))
        self.stem = Conv2d(in_channels, stage_channels[0], 3, key=next(keys))
        self.num_res_blocks = num_res_blocks
        self.down, channels = [], stage_channels[0]
        for c in stage_channels:
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(channels, c, embed_dim, 0.0, key=next(keys)))
                channels = c
        bottom = image_size // factor
        self.to_tokens = eqx.nn.Linear(channels, dim, key=next(keys))
        self.position = 0.02 * jax.random.normal(next(keys), (bottom * bottom, dim))
        self.transformer = [
            TransformerBlock(dim, embed_dim, num_heads, dropout, key=next(keys))
            for _ in range(depth)
        ]
        self.from_tokens = eqx.nn.Linear(dim, channels, key=next(keys))
        self.up = []
        for c in reversed(stage_channels):
            for _ in range(num_res_blocks):
                self.up.append(ResBlock(channels + c, c, embed_dim, 0.0, key=next(keys)))
                channels = c
        self.head = OutputHead(channels, in_channels, key=next(keys))

    def __call__(
        self,
        z: Float[Array, "C H W"],
        lam: Float[Array, ""],
        cond: Conditioning,
        *,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "C H W"]:
        """Dropout is active only when a `key` is given (training)."""
        embedding = self.embedding(lam, cond)
        stages = len(self.down) // self.num_res_blocks
        h, skips = self.stem(to_channels_last(z)), []
        for stage in range(stages):
            for i in range(self.num_res_blocks):
                h = self.down[stage * self.num_res_blocks + i](
                    h, embedding, key=None, inference=True
                )
                skips.append(h)
            if stage < stages - 1:
                h = downsample(h)
        # The transformer is the section a training batch computes in groups on CPU
        # (`grouped`); the convolutions keep the whole batch.
        h = grouped(
            _transformer_section,
            (self.to_tokens, self.position, self.transformer, self.from_tokens),
            h,
            embedding,
            key,
        )
        for stage in range(stages):
            for i in range(self.num_res_blocks):
                block = self.up[stage * self.num_res_blocks + i]
                h = block(
                    jnp.concatenate([h, skips.pop()], axis=-1), embedding, key=None, inference=True
                )
            if stage < stages - 1:
                h = upsample(h)
        return to_channels_first(self.head(h))
