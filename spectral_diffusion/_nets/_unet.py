"""A U-Net denoiser with FiLM conditioning in every residual block."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._blocks import (
    Attention,
    ConditionEmbedding,
    Conditioning,
    Conv2d,
    OutputHead,
    ResBlock,
    downsample,
    split_key,
    to_channels_first,
    to_channels_last,
    upsample,
)


class UNet(eqx.Module):
    r"""U-Net on one `(C, H, W)` image, conditioned on $(y, \lambda_t, \lambda_0, \lambda_1)$.

    Residual blocks at each resolution (FiLM from the conditioning embedding in every
    one), self-attention at the chosen resolutions, average-pool down and
    nearest-neighbour up with skip connections. Dropout only at the resolutions in
    `dropout_resolutions` (simple diffusion regularises the low-resolution blocks).
    The output has the input's shape; what it means (eps, v or x) is set by
    [`spectral_diffusion.Denoiser`][].
    """

    stem: Conv2d
    embedding: ConditionEmbedding
    down: list
    middle: list
    up: list
    head: OutputHead
    levels: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        *,
        in_channels: int = 3,
        image_size: int = 32,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (8,),
        num_heads: int = 4,
        dropout: float = 0.0,
        dropout_resolutions: Sequence[int] = (),
        num_classes: int = 1,
        key: PRNGKeyArray,
    ):
        if image_size % 2 ** (len(channel_mults) - 1):
            raise ValueError(
                f"`image_size` {image_size} must be divisible by 2^(len(channel_mults) - 1)."
            )
        keys = iter(jax.random.split(key, 64))
        embed_dim = 4 * base_channels
        self.embedding = ConditionEmbedding(num_classes, embed_dim, key=next(keys))
        self.stem = Conv2d(in_channels, base_channels, 3, key=next(keys))
        self.levels = tuple(channel_mults)

        def block(c_in, c_out, resolution):
            p = dropout if resolution in dropout_resolutions else 0.0
            res = ResBlock(c_in, c_out, embed_dim, p, key=next(keys))
            attn = (
                Attention(c_out, num_heads, key=next(keys))
                if resolution in attention_resolutions
                else None
            )
            return [res, attn]

        channels, resolution, skips = base_channels, image_size, [base_channels]
        self.down = []
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(block(channels, base_channels * mult, resolution))
                channels = base_channels * mult
                skips.append(channels)
            if level < len(channel_mults) - 1:
                resolution //= 2
                skips.append(channels)
        self.middle = [
            ResBlock(channels, channels, embed_dim, 0.0, key=next(keys)),
            Attention(channels, num_heads, key=next(keys)),
            ResBlock(channels, channels, embed_dim, 0.0, key=next(keys)),
        ]
        self.up = []
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(block(channels + skips.pop(), base_channels * mult, resolution))
                channels = base_channels * mult
            if level > 0:
                resolution *= 2
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
        keys = iter(split_key(key, len(self.down) + len(self.up) + 2))
        h = self.stem(to_channels_last(z))
        skips = [h]
        blocks = iter(self.down)
        num_res_blocks = len(self.down) // len(self.levels)
        for level in range(len(self.levels)):
            for _ in range(num_res_blocks):
                res, attn = next(blocks)
                h = res(h, embedding, key=next(keys), inference=False)
                h = h if attn is None else attn(h)
                skips.append(h)
            if level < len(self.levels) - 1:
                h = downsample(h)
                skips.append(h)
        first, attention, second = self.middle
        h = second(
            attention(first(h, embedding, key=None, inference=True)),
            embedding,
            key=None,
            inference=True,
        )
        blocks = iter(self.up)
        for level in reversed(range(len(self.levels))):
            for _ in range(num_res_blocks + 1):
                res, attn = next(blocks)
                h = res(
                    jnp.concatenate([h, skips.pop()], axis=-1),
                    embedding,
                    key=next(keys),
                    inference=False,
                )
                h = h if attn is None else attn(h)
            if level > 0:
                h = upsample(h)
        return to_channels_first(self.head(h))
