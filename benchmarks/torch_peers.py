"""PyTorch peers for `bench_train.py` (benchmark extra only; never imported by the
library).

- `TorchUViT`: the cpu preset's U-ViT (`spectral_diffusion.UViT`) written as a
  PyTorch user would write it, eager, NCHW, `F.scaled_dot_product_attention`: the
  same layers, widths, initial identities and parameter count (1,293,155 for 15
  classes), so that the two frameworks run the same graph.
- `diffusers_unet`: diffusers' `UNet2DModel` sized to about the same parameter count.
- `TorchTrainer`: one training step as the library's cpu preset takes it (v-prediction,
  Kingma-Gao sigmoid-weighted epsilon loss, stratified cosine noise levels, gradient
  clipping, AdamW with warm-up, EMA) and DDIM sampling (eta = 0).
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn


_MIN_FREQUENCY, _MAX_FREQUENCY = 0.01, 10.0


def sinusoidal(value: torch.Tensor, dim: int) -> torch.Tensor:
    frequencies = torch.exp(
        torch.linspace(math.log(_MIN_FREQUENCY), math.log(_MAX_FREQUENCY), dim // 2)
    )
    angles = value[:, None] * frequencies
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class ConditionEmbedding(nn.Module):
    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.dim = dim
        self.classes = nn.Embedding(num_classes + 1, dim)
        self.mlp = nn.Sequential(
            nn.Linear(4 * dim, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim)
        )

    def forward(self, lam, label, logsnr_0, logsnr_1):
        parts = [self.classes(label)] + [sinusoidal(v, self.dim) for v in (lam, logsnr_0, logsnr_1)]
        return self.mlp(torch.cat(parts, dim=-1))


class FiLM(nn.Module):
    def __init__(self, embedding_dim: int, channels: int, spatial: bool):
        super().__init__()
        self.linear = nn.Linear(embedding_dim, 2 * channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.spatial = spatial

    def forward(self, h, embedding):
        gamma, beta = self.linear(embedding).chunk(2, dim=-1)
        if self.spatial:  # NCHW
            gamma, beta = gamma[:, :, None, None], beta[:, :, None, None]
        else:  # (B, tokens, C)
            gamma, beta = gamma[:, None], beta[:, None]
        return h * (1 + gamma) + beta


def _groups(channels: int) -> int:
    return math.gcd(channels, 32)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, embedding_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.film1 = FiLM(embedding_dim, c_in, spatial=True)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.film2 = FiLM(embedding_dim, c_out, spatial=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        self.skip = None if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, embedding):
        h = self.conv1(F.silu(self.film1(self.norm1(x), embedding)))
        h = self.conv2(F.silu(self.film2(self.norm2(h), embedding)))
        return h + (x if self.skip is None else self.skip(x))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, x):
        batch, tokens, dim = x.shape

        def heads(t):
            return t.view(batch, tokens, self.num_heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        )
        return self.out(out.transpose(1, 2).reshape(batch, tokens, dim))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, embedding_dim: int, num_heads: int):
        super().__init__()
        self.film1 = FiLM(embedding_dim, dim, spatial=False)
        self.attention = Attention(dim, num_heads)
        self.film2 = FiLM(embedding_dim, dim, spatial=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU("tanh"), nn.Linear(4 * dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)

    def forward(self, tokens, embedding):
        norm = lambda x: F.layer_norm(x, x.shape[-1:])  # noqa: E731
        tokens = tokens + self.attention(self.film1(norm(tokens), embedding))
        return tokens + self.mlp(self.film2(norm(tokens), embedding))


class TorchUViT(nn.Module):
    """`spectral_diffusion.UViT` in PyTorch (NCHW; without dropout). Takes the same
    keyword arguments, e.g. a preset's `model.kwargs`."""

    def __init__(
        self,
        *,
        image_size,
        stage_channels,
        num_res_blocks,
        dim,
        depth,
        num_heads,
        num_classes,
        in_channels=3,
    ):
        super().__init__()
        embed_dim = 4 * stage_channels[0]
        self.num_res_blocks = num_res_blocks
        self.embedding = ConditionEmbedding(num_classes, embed_dim)
        self.stem = nn.Conv2d(in_channels, stage_channels[0], 3, padding=1)
        self.down, channels = nn.ModuleList(), stage_channels[0]
        for c in stage_channels:
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(channels, c, embed_dim))
                channels = c
        bottom = image_size // 2 ** (len(stage_channels) - 1)
        self.to_tokens = nn.Linear(channels, dim)
        self.position = nn.Parameter(0.02 * torch.randn(bottom * bottom, dim))
        self.transformer = nn.ModuleList(
            TransformerBlock(dim, embed_dim, num_heads) for _ in range(depth)
        )
        self.from_tokens = nn.Linear(dim, channels)
        self.up = nn.ModuleList()
        for c in reversed(stage_channels):
            for _ in range(num_res_blocks):
                self.up.append(ResBlock(channels + c, c, embed_dim))
                channels = c
        self.head_norm = nn.GroupNorm(_groups(channels), channels)
        self.head = nn.Conv2d(channels, in_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, z, lam, label, logsnr_0, logsnr_1):
        embedding = self.embedding(lam, label, logsnr_0, logsnr_1)
        stages = len(self.down) // self.num_res_blocks
        h, skips = self.stem(z), []
        for stage in range(stages):
            for i in range(self.num_res_blocks):
                h = self.down[stage * self.num_res_blocks + i](h, embedding)
                skips.append(h)
            if stage < stages - 1:
                h = F.avg_pool2d(h, 2)
        batch, channels, height, width = h.shape
        tokens = self.to_tokens(h.flatten(2).transpose(1, 2)) + self.position
        for block in self.transformer:
            tokens = block(tokens, embedding)
        h = h + self.from_tokens(tokens).transpose(1, 2).reshape(batch, channels, height, width)
        for stage in range(stages):
            for i in range(self.num_res_blocks):
                h = self.up[stage * self.num_res_blocks + i](
                    torch.cat([h, skips.pop()], dim=1), embedding
                )
            if stage < stages - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.head(F.silu(self.head_norm(h)))


class DiffusersUNet(nn.Module):
    """diffusers' `UNet2DModel` behind the same call signature (it is conditioned on
    the class and on lambda as its timestep; it has no inputs for the schedule ends)."""

    def __init__(self, num_classes: int):
        super().__init__()
        from diffusers import UNet2DModel

        self.unet = UNet2DModel(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            layers_per_block=1,
            block_out_channels=(32, 64, 72),
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
            attention_head_dim=24,
            num_class_embeds=num_classes + 1,
        )

    def forward(self, z, lam, label, logsnr_0, logsnr_1):
        return self.unet(z, lam, class_labels=label).sample


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _alpha_sigma(lam):
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def _cosine_logsnr(t, lo=-15.0, hi=15.0):
    t_min = math.atan(math.exp(-0.5 * hi))
    t_max = math.atan(math.exp(-0.5 * lo))
    return -2.0 * torch.log(torch.tan(t_min + t * (t_max - t_min)))


class TorchTrainer:
    """The cpu preset's train step and DDIM sampler around a PyTorch network."""

    def __init__(
        self,
        net: nn.Module,
        *,
        steps: int,
        learning_rate: float,
        warmup: int,
        b2: float,
        weight_decay: float,
        grad_clip: float,
        ema_decay: float,
    ):
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(
            net.parameters(), lr=learning_rate, betas=(0.9, b2), weight_decay=weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * s / steps))),
        )
        self.grad_clip, self.ema_decay, self.step_count = grad_clip, ema_decay, 0

    def train_step(self, images, labels):
        batch = images.shape[0]
        # Stratified noise levels on the cosine over [-15, 15] (the baseline density).
        u = (torch.rand(()) + torch.arange(batch) / batch) % 1.0
        lam = _cosine_logsnr(u)
        # Weight 1/p(lambda) of that density: -dlambda/dt.
        t_min, t_max = math.atan(math.exp(7.5)), math.atan(math.exp(-7.5))
        angle = t_min + u * (t_max - t_min)
        inverse_density = 2.0 * (t_max - t_min) / (torch.sin(angle) * torch.cos(angle)).abs()
        ends = torch.full((batch,), 15.0), torch.full((batch,), -15.0)
        alpha, sigma = (v[:, None, None, None] for v in _alpha_sigma(lam))
        eps = torch.randn_like(images)
        z = alpha * images + sigma * eps
        v_hat = self.net(z, lam, labels, *ends)
        x_hat = alpha * z - sigma * v_hat
        eps_hat = (z - alpha * x_hat) / sigma
        weight = 0.5 * torch.sigmoid(-lam) * inverse_density
        loss = (weight * ((eps - eps_hat) ** 2).mean((1, 2, 3))).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        decay = min(self.ema_decay, (1 + self.step_count) / (10 + self.step_count))
        with torch.no_grad():
            ema, params = list(self.ema.parameters()), list(self.net.parameters())
            torch._foreach_lerp_(ema, params, 1.0 - decay)
        self.step_count += 1
        return loss.detach()

    @torch.no_grad()
    def ddim(self, z, labels, num_steps):
        """Deterministic DDIM (eta = 0) on the cosine over [-15, 15], `num_steps` calls."""
        batch = z.shape[0]
        ends = torch.full((batch,), 15.0), torch.full((batch,), -15.0)
        times = torch.linspace(1.0, 0.0, num_steps + 1)
        for i in range(num_steps):
            lam, lam_next = _cosine_logsnr(times[i]), _cosine_logsnr(times[i + 1])
            alpha, sigma = _alpha_sigma(lam)
            v_hat = self.ema(z, lam.expand(batch), labels, *ends)
            x_hat = alpha * z - sigma * v_hat
            eps_hat = (z - alpha * x_hat) / sigma
            alpha_next, sigma_next = _alpha_sigma(lam_next)
            z = alpha_next * x_hat + sigma_next * eps_hat
        return z
