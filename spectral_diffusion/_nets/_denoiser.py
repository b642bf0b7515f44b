"""Output parameterisations and the wrapper that turns a network into a denoiser."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._schedules import alpha_sigma
from ._blocks import Conditioning


class Parameterisation(eqx.Module):
    r"""What a network's output means; converts it to $\hat x$ and $\hat\epsilon$ at
    $z = \alpha x + \sigma\epsilon$."""

    @abc.abstractmethod
    def to_x(self, out, z, alpha, sigma) -> Float[Array, "C H W"]: ...

    def to_eps(self, out, z, alpha, sigma) -> Float[Array, "C H W"]:
        return (z - alpha * self.to_x(out, z, alpha, sigma)) / sigma


class EpsPrediction(Parameterisation):
    r"""The network predicts $\epsilon$: $\hat x = (z - \sigma\hat\epsilon)/\alpha$."""

    def to_x(self, out, z, alpha, sigma):
        return (z - sigma * out) / alpha

    def to_eps(self, out, z, alpha, sigma):
        return out


class VPrediction(Parameterisation):
    r"""The network predicts $v = \alpha\epsilon - \sigma x$: $\hat x = \alpha z - \sigma\hat v$."""

    def to_x(self, out, z, alpha, sigma):
        return alpha * z - sigma * out


class XPrediction(Parameterisation):
    r"""The network predicts $x$ directly."""

    def to_x(self, out, z, alpha, sigma):
        return out


#: The names accepted at the config/CLI edge.
PARAMETERISATIONS = {"eps": EpsPrediction, "v": VPrediction, "x": XPrediction}


class Denoiser(eqx.Module):
    r"""A network with its output parameterisation: `denoise(z, lam, cond) -> x_hat`,
    the interface of every sampler.

    **Arguments:**

    - `net`: a [`spectral_diffusion.UNet`][], [`spectral_diffusion.UViT`][] or any
        `net(z, lam, cond, *, key=None)` of the same shape.
    - `parameterisation`: [`spectral_diffusion.EpsPrediction`][],
        [`spectral_diffusion.VPrediction`][] or [`spectral_diffusion.XPrediction`][].
    """

    net: eqx.Module
    parameterisation: Parameterisation = VPrediction()

    @property
    def num_classes(self) -> int | None:
        """The network's classes (its null class is this number), or `None` for a
        network without a class embedding."""
        embedding = getattr(self.net, "embedding", None)
        return getattr(embedding, "num_classes", None)

    def output(self, z, lam, cond: Conditioning, *, key: PRNGKeyArray | None = None):
        return self.net(z, lam, cond, key=key)

    def __call__(
        self, z: Float[Array, "C H W"], lam: Float[Array, ""], cond: Conditioning
    ) -> Float[Array, "C H W"]:
        alpha, sigma = alpha_sigma(jnp.asarray(lam))
        return self.parameterisation.to_x(self.output(z, lam, cond), z, alpha, sigma)
