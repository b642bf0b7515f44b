r"""Class-conditional Gaussian mixtures over schedules (SPEC §4)."""

import io
import math
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._checks import check_finite, check_knots, check_min_ndim
from ._io import atomic_write_bytes
from ._schedules import PiecewiseLinear


#: Smallest logSNR gap between consecutive knots of a sampled schedule (nats): about
#: 50 float32 ulps at |λ| = 30, and far below anything a sampler resolves.
MIN_GAP = 1e-4


def knots_to_unconstrained(knots: Float[ArrayLike, "*batch knots"]) -> Float[Array, "*batch knots"]:
    r"""Knots $\lambda_0 > \dots > \lambda_K$ to unconstrained coordinates:
    $u_0 = \lambda_K$, $u_j = \log(\lambda_{j-1} - \lambda_j)$. One-to-one; every $u$ is
    a valid (strictly decreasing) schedule.

    **Raises:**

    `ValueError` (through `equinox.error_if` under `jit`) for fewer than 2 knots,
    NaN/inf, or knots that are not strictly decreasing, which have no coordinates
    (the log of a gap <= 0).
    """
    knots = check_knots(knots)
    gaps = knots[..., :-1] - knots[..., 1:]
    return jnp.concatenate([knots[..., -1:], jnp.log(gaps)], axis=-1)


def knots_from_unconstrained(u: Float[ArrayLike, "*batch knots"]) -> Float[Array, "*batch knots"]:
    r"""The inverse of [`spectral_diffusion.knots_to_unconstrained`][]:
    $\lambda_j = u_0 + \sum_{i > j} e^{u_i}$."""
    u = jnp.asarray(u)
    gaps = jnp.exp(u[..., 1:])
    # Sum of the gaps after j, for j = 0..K (the last is an empty sum).
    tail = jnp.flip(jnp.cumsum(jnp.flip(gaps, -1), -1), -1)
    return u[..., :1] + jnp.concatenate([tail, jnp.zeros_like(gaps[..., :1])], axis=-1)


def _log_gaussian(x, mean, chol):
    # log N(x | mean, L L^T) for every point x (N, D) and component (M, D), (M, D, D).
    diff = x[:, None, :] - mean[None]
    solved = jax.vmap(
        lambda factor, d: jax.scipy.linalg.solve_triangular(factor, d.T, lower=True).T,
        in_axes=(0, 1),
        out_axes=1,
    )(chol, diff)
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
    dim = x.shape[-1]
    return -0.5 * jnp.sum(solved**2, -1) - log_det[None] - 0.5 * dim * jnp.log(2 * jnp.pi)


def _em(x, mask, key, num_components, iterations, regularisation, diagonal):
    """EM for one class: points `x` (N, D) counted with weights `mask` (N,)."""
    n, dim = x.shape
    # Initial means: distinct points of this class, chosen at random.
    order = jax.random.permutation(key, n)
    rank = jnp.argsort(jnp.argsort(jnp.where(mask[order] > 0, 0, 1), stable=True), stable=True)
    chosen = order[jnp.argsort(rank)[:num_components]]
    mean = x[chosen]
    total = jnp.sum(mask)
    centre = jnp.sum(mask[:, None] * x, 0) / total
    spread = (
        jnp.sum(
            mask[:, None, None] * jnp.einsum("ni,nj->nij", x - centre[None], x - centre[None]), 0
        )
        / total
    )
    eye = jnp.eye(dim)
    start = jnp.linalg.cholesky(spread + regularisation * eye)
    chol = jnp.broadcast_to(start, (num_components, dim, dim))
    log_weight = jnp.full(num_components, -jnp.log(num_components))

    def step(_, params):
        log_weight, mean, chol = params
        log_joint = log_weight[None] + _log_gaussian(x, mean, chol)
        resp = jnp.exp(log_joint - jax.scipy.special.logsumexp(log_joint, 1, keepdims=True))
        resp = resp * mask[:, None]
        count = jnp.sum(resp, 0) + 1e-10
        mean = (resp.T @ x) / count[:, None]
        diff = x[:, None, :] - mean[None]
        cov = jnp.einsum("nm,nmi,nmj->mij", resp, diff, diff) / count[:, None, None]
        if diagonal:
            cov = cov * eye[None]
        chol = jnp.linalg.cholesky(cov + regularisation * eye[None])
        return jnp.log(count / jnp.sum(count)), mean, chol

    log_weight, mean, chol = jax.lax.fori_loop(0, iterations, step, (log_weight, mean, chol))
    log_joint = log_weight[None] + _log_gaussian(x, mean, chol)
    log_likelihood = jnp.sum(mask * jax.scipy.special.logsumexp(log_joint, 1)) / total
    return log_weight, mean, chol, log_likelihood


class ScheduleMixture(eqx.Module):
    r"""A Gaussian mixture per class over unconstrained schedule coordinates.

    Fit it on the training set's spectral schedules with
    [`spectral_diffusion.ScheduleMixture.fit`][]; at generation time
    [`spectral_diffusion.ScheduleMixture.sample`][] draws one schedule per requested
    label, which both the sampler and the denoiser's conditioning then use.
    """

    log_weights: Float[Array, "classes components"]
    means: Float[Array, "classes components dim"]
    cholesky: Float[Array, "classes components dim dim"]
    log_likelihood: Float[Array, " classes"]
    #: Per-class range of each unconstrained coordinate over the training schedules;
    #: samples are clipped into it (see `sample`).
    lower: Float[Array, "classes dim"]
    upper: Float[Array, "classes dim"]

    @classmethod
    def fit(
        cls,
        knots: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        num_classes: int | None = None,
        num_components: int = 4,
        covariance: str = "full",
        regularisation: float = 1e-3,
        iterations: int = 100,
        key: PRNGKeyArray,
    ) -> "ScheduleMixture":
        r"""Fit one mixture per class by EM, all classes at once (vmapped).

        **Arguments:**

        - `knots`: `(N, K + 1)` schedule knots of the training examples.
        - `labels`: `(N,)` class labels in `[0, num_classes)`; `None` for one mixture.
        - `num_classes`: default `max(labels) + 1`.
        - `num_components`: mixture components per class.
        - `covariance`: `"full"` or `"diag"`.
        - `regularisation`: added to every covariance's diagonal.
        - `iterations`: EM iterations (fixed, so the fit is one compiled loop).
        - `key`: initialises the means.

        **Raises:**

        `ValueError` for empty data, bad shapes, NaN/inf, non-decreasing knots, a
        class with fewer examples than components, or an unknown `covariance`.
        """
        check_min_ndim(knots, "knots", 2, "(N, K + 1)")
        knots = np.asarray(check_finite(knots, "knots"), np.float32)
        if knots.ndim != 2 or len(knots) == 0 or knots.shape[1] < 2:
            raise ValueError(f"`knots` must be (N >= 1, K + 1 >= 2), got {knots.shape}.")
        if np.any(np.diff(knots, axis=1) >= 0):
            raise ValueError("`knots` must be strictly decreasing along their last axis.")
        labels = np.zeros(len(knots), np.int32) if labels is None else np.asarray(labels, np.int32)
        if labels.shape != (len(knots),):
            raise ValueError(f"`labels` must have shape ({len(knots)},), got {labels.shape}.")
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        counts = np.bincount(labels, minlength=num_classes)
        if labels.min() < 0 or len(counts) > num_classes or counts.min() < num_components:
            raise ValueError(
                f"Every class in [0, {num_classes}) needs at least {num_components} examples; "
                f"counts are {counts.tolist()}."
            )
        if covariance not in ("full", "diag"):
            raise ValueError(f"`covariance` must be 'full' or 'diag', got {covariance!r}.")
        u = knots_to_unconstrained(knots)
        masks = jnp.asarray(labels[None, :] == np.arange(num_classes)[:, None], jnp.float32)
        fit = jax.jit(
            jax.vmap(_em, in_axes=(None, 0, 0, None, None, None, None)), static_argnums=(3, 4, 6)
        )
        keys = jax.random.split(key, num_classes)
        log_weights, means, chol, log_likelihood = fit(
            u, masks, keys, num_components, iterations, regularisation, covariance == "diag"
        )
        lower = np.stack([np.asarray(u)[labels == c].min(0) for c in range(num_classes)])
        upper = np.stack([np.asarray(u)[labels == c].max(0) for c in range(num_classes)])
        return cls(log_weights, means, chol, log_likelihood, jnp.asarray(lower), jnp.asarray(upper))

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    def sample_unconstrained(
        self, labels: Int[ArrayLike, " B"], *, key: PRNGKeyArray
    ) -> Float[Array, "B dim"]:
        labels = jnp.asarray(labels)
        component_key, normal_key = jax.random.split(key)
        components = jax.random.categorical(component_key, self.log_weights[labels], axis=-1)
        mean = self.means[labels, components]
        chol = self.cholesky[labels, components]
        normal = jax.random.normal(normal_key, mean.shape)
        return mean + jnp.einsum("bij,bj->bi", chol, normal)

    def sample(self, labels: Int[ArrayLike, " B"], *, key: PRNGKeyArray) -> PiecewiseLinear:
        r"""One schedule per label, drawn from that class's mixture: a batched
        [`spectral_diffusion.PiecewiseLinear`][] with knots `(B, K + 1)`.

        Each unconstrained coordinate (λ_min and every log-gap) is clipped into the
        range the class's training schedules span. A Gaussian in log-gap space has
        heavy tails in λ: where a gap is a tie-break sliver for some images and nats
        wide for others (frequency-focused schedules), an unclipped draw can put
        λ_max in the thousands. Gaps are also floored at `MIN_GAP` nats, so float32
        knots stay strictly decreasing.
        """
        u = self.sample_unconstrained(labels, key=key)
        labels = jnp.asarray(labels)
        u = jnp.clip(u, self.lower[labels], self.upper[labels])
        u = u.at[:, 1:].set(jnp.maximum(u[:, 1:], math.log(MIN_GAP)))
        return PiecewiseLinear(knots_from_unconstrained(u))

    def save(self, path: str | os.PathLike) -> Path:
        """Write to `.npz` atomically (temporary file, then rename)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in self.__dict__.items()})
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ScheduleMixture":
        """Read a mixture written by [`spectral_diffusion.ScheduleMixture.save`][]."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No schedule mixture at {path}.")
        with np.load(path) as data:
            fields = {"log_weights", "means", "cholesky", "log_likelihood", "lower", "upper"}
            missing = fields - set(data)
            if missing:
                raise ValueError(f"{path} is not a schedule mixture (missing {sorted(missing)}).")
            return cls(**{k: jnp.asarray(data[k]) for k in data})
