r"""The Gaussian oracle: data whose exact denoiser and sampling error are closed-form."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from ._bounds import BITS, quantization_noise_power
from ._checks import as_integer, as_real, check_in_range, check_min_ndim, fail_if
from ._custom_types import IntScalar, RealScalar
from ._samplers._common import check_per_example
from ._samplers._diffrax import ode
from ._schedules import Schedule, alpha_sigma, check_num_steps
from ._spectrum import RANGE_TOLERANCE, filter_frequencies, power_spectrum


def spectral_errors(
    generated: Float[Array, "*batch C H W"], variances: Float[Array, "*batch C H W"]
) -> dict[str, Float[Array, "*batch"]]:
    r"""Distances between zero-mean Gaussians diagonal in one orthonormal basis.

    - `w2`: $W_2^2 = \sum_k (\sqrt{v_k} - \sqrt{s_k})^2$ relative to $\sum_k s_k$ (the
      exact pixel-space Fréchet distance, normalised by the data's total variance);
    - `kl`: $\operatorname{mean}_k \tfrac12 (v_k/s_k - 1 - \log(v_k/s_k))$, the KL
      divergence $\mathrm{KL}(\mathcal N(0, v)\,\|\,\mathcal N(0, s))$ per dimension.
    """
    return band_errors(generated, variances, None, axes=(-3, -2, -1))


def band_errors(
    generated: Float[Array, "..."],
    variances: Float[Array, "..."],
    weights: Float[Array, "..."] | None,
    axes: tuple[int, ...],
) -> dict[str, Float[Array, "..."]]:
    """[`spectral_diffusion.spectral_errors`][] over `axes`, each band counted
    `weights` times (`None`: once): a summary of many bands by fewer, weighted ones
    gives the same sums. The log ratio is taken as a difference of logs, so extreme
    variances stay finite."""
    weights = jnp.ones_like(variances) if weights is None else weights
    ratio = generated / variances
    log_ratio = jnp.log(generated) - jnp.log(variances)
    w2 = jnp.sum(weights * (jnp.sqrt(generated) - jnp.sqrt(variances)) ** 2, axes) / jnp.sum(
        weights * variances, axes
    )
    kl = jnp.sum(weights * 0.5 * (ratio - 1.0 - log_ratio), axes) / jnp.sum(weights, axes)
    return {"w2": w2, "kl": kl}


def ancestral_band_variance(
    variances: Float[Array, "..."], logsnr_grid: Float[Array, " grid"], eta: RealScalar
) -> Float[Array, "..."]:
    r"""The recursion of [`spectral_diffusion.GaussianSpectral.ancestral_variance`][]
    for bands of any shape along the sampling grid's logSNRs (noise to data).

    Safe at extreme logSNRs: $\alpha$, $\sigma$ come from log-sigmoids, and the
    deterministic share of each step, $\sqrt{\sigma_b^2 - c^2} =
    \sigma_b \sqrt{1 - \eta^2 + \eta^2 e^{\lambda_a - \lambda_b}}$, is formed in
    log space, so any finite grid gives finite values and gradients.
    """
    s = variances
    lam = logsnr_grid
    eta = jnp.asarray(eta, s.dtype)
    log_eta2 = jnp.where(eta > 0, 2.0 * jnp.log(jnp.where(eta > 0, eta, 1.0)), -jnp.inf)
    log_keep = jnp.log1p(-jnp.minimum(eta**2, 1.0))

    def step(i, v):
        alpha_a, sigma_a = alpha_sigma(lam[i])
        alpha_b, sigma_b = alpha_sigma(lam[i + 1])
        gap = lam[i] - lam[i + 1]
        c2 = eta**2 * sigma_b**2 * -jnp.expm1(gap)
        deterministic = sigma_b * jnp.exp(0.5 * jnp.logaddexp(log_keep, log_eta2 + gap))
        m = (alpha_b * alpha_a * s + deterministic * sigma_a) / (alpha_a**2 * s + sigma_a**2)
        return m**2 * v + c2

    v = jax.lax.fori_loop(0, lam.shape[0] - 1, step, jnp.ones_like(s))
    alpha_0, _ = alpha_sigma(lam[-1])
    return v / alpha_0**2


class GaussianSpectral(eqx.Module):
    r"""Gaussian data, diagonal in the orthonormal Fourier basis with variances $s_k$.

    One image's power spectrum used as its own Gaussian: the exact denoiser is the
    Wiener filter $\hat x = \mathrm{IDFT}\bigl(\frac{\alpha s}{\alpha^2 s + \sigma^2}
    \mathrm{DFT}(z)\bigr)$, deterministic samplers are linear per frequency, and the
    variance $v_k$ of what a sampler generates is closed-form — hence so are the exact
    Fréchet distance and KL divergence to the data. This isolates what a schedule does
    to sampling error at a given NFE, at any resolution, and checks every sampler (a
    Monte Carlo run with [`spectral_diffusion.GaussianSpectral.denoise`][] must agree
    with the closed form).
    """

    variances: Float[Array, "C H W"]

    def __init__(self, variances: ArrayLike):
        """**Arguments:**

        - `variances`: $s_k > 0$ per frequency, `(C, H, W)` in `fftfreq` order,
            symmetric under $k \\to -k$ (as every real image's power spectrum is).
        """
        check_min_ndim(variances, "variances", 3, "(C, H, W)")
        variances = jnp.asarray(variances)
        bad = ~jnp.all(jnp.isfinite(variances) & (variances > 0))
        self.variances = fail_if(variances, bad, "`variances` must be finite and positive.")

    @classmethod
    def from_image(cls, x: ArrayLike, bits: IntScalar | None = BITS) -> "GaussianSpectral":
        """The Gaussian whose variances are the power spectrum of image `x` plus the
        quantisation floor $q$ (which keeps every variance positive).

        **Arguments:**

        - `x`: one image `(C, H, W)` in [-1, 1].
        - `bits`: as in [`spectral_diffusion.quantization_noise_power`][]; with `None`
            a zero band makes the Gaussian degenerate and raises.
        """
        check_min_ndim(x, "x", 3, "(C, H, W)")
        x = check_in_range(x, "x", (-1.0, 1.0), RANGE_TOLERANCE)
        power = power_spectrum(x)
        return cls(power + jnp.asarray(quantization_noise_power(bits), power.dtype))

    def sample(
        self, num_samples: IntScalar, *, key: PRNGKeyArray
    ) -> Float[Array, "num_samples C H W"]:
        """Draw `num_samples` (an integer >= 1) images from the Gaussian."""
        num_samples = as_integer(num_samples, "num_samples", 1)
        white = jax.random.normal(key, (num_samples, *self.variances.shape), self.variances.dtype)
        return filter_frequencies(white, jnp.sqrt(self.variances))

    def _wiener_gain(self, lam: Float[ArrayLike, ""]) -> Float[Array, "C H W"]:
        alpha, sigma = alpha_sigma(jnp.asarray(lam))
        return alpha * self.variances / (alpha**2 * self.variances + sigma**2)

    def denoise(
        self, z: Float[Array, "C H W"], lam: Float[ArrayLike, ""], cond=None
    ) -> Float[Array, "C H W"]:
        r"""The exact denoiser $E[x \mid z_\lambda]$ (a `denoise(z, lam, cond)`)."""
        return filter_frequencies(z, self._wiener_gain(lam))

    def _band_denoise(self, z_hat, lam, cond=None):
        # The same Wiener filter acting on Fourier coefficients directly: with it,
        # a linear sampler run on an array of ones returns its per-band multiplier.
        return self._wiener_gain(lam) * z_hat

    def errors(self, generated: Float[ArrayLike, "C H W"]) -> dict[str, Float[Array, ""]]:
        """`w2` and `kl` of generated per-frequency variances against the data's
        (see [`spectral_diffusion.spectral_errors`][])."""
        return spectral_errors(jnp.asarray(generated), self.variances)

    def ancestral_variance(
        self, schedule: Schedule, num_steps: IntScalar, eta: RealScalar = 1.0
    ) -> Float[Array, "C H W"]:
        r"""Closed-form per-frequency variance of what [`spectral_diffusion.ddim`][]
        generates with this denoiser (any `eta`; 0 is DDIM, 1 is DDPM).

        A step from $a$ to $b$ maps band $k$ by
        $m = \frac{\alpha_b \alpha_a s + \sqrt{\sigma_b^2 - c^2}\,\sigma_a}
                  {\alpha_a^2 s + \sigma_a^2}$
        and adds noise $c^2$, so $v \leftarrow m^2 v + c^2$, from $v = 1$ ($z_1$ white)
        to $v / \alpha(0)^2$.
        """
        num_steps = check_num_steps(num_steps)
        check_per_example(schedule)
        eta = as_real(eta, "eta", low=0.0, high=1.0)
        return ancestral_band_variance(self.variances, schedule.logsnr_grid(num_steps), eta)

    def ddim_error(self, schedule: Schedule, num_steps: IntScalar) -> dict[str, Float[Array, ""]]:
        """Closed-form `{"w2", "kl"}` of DDIM (`eta=0`) sampling."""
        return self.errors(self.ancestral_variance(schedule, num_steps, eta=0.0))

    def ancestral_error(
        self, schedule: Schedule, num_steps: IntScalar, eta: RealScalar = 1.0
    ) -> dict[str, Float[Array, ""]]:
        """Closed-form `{"w2", "kl"}` of ancestral (DDPM, `eta=1`) sampling."""
        return self.errors(self.ancestral_variance(schedule, num_steps, eta=eta))

    def euler_maruyama_variance(
        self, schedule: Schedule, num_steps: IntScalar
    ) -> Float[Array, "C H W"]:
        r"""Closed-form per-frequency variance of [`spectral_diffusion.sde`][] with
        `diffrax.Euler()` (Euler–Maruyama) on the fixed grid.

        In $y = z/\alpha$ the Wiener estimate is $\hat x = \frac{S}{S + s^2}\,y$, so a
        step from $s_a$ to $s_b$ maps band $k$ by
        $m = 1 - 2\,(1 - s_b/s_a)\,\frac{s_a^2}{S + s_a^2}$ and adds noise
        $2 s_a (s_a - s_b)$: $v \leftarrow m^2 v + 2 s_a (s_a - s_b)$ from
        $v = 1/\alpha(1)^2$.
        """
        num_steps = check_num_steps(num_steps)
        check_per_example(schedule)
        lam = schedule.logsnr_grid(num_steps)
        s_grid = jnp.exp(-0.5 * lam)
        data = self.variances

        def step(i, v):
            s_a, s_b = s_grid[i], s_grid[i + 1]
            m = 1.0 - 2.0 * (1.0 - s_b / s_a) * s_a**2 / (data + s_a**2)
            return m**2 * v + 2.0 * s_a * (s_a - s_b)

        alpha_1, _ = alpha_sigma(lam[0])
        return jax.lax.fori_loop(0, num_steps, step, jnp.ones_like(data) / alpha_1**2)

    def ode_variance(
        self,
        schedule: Schedule,
        num_steps: IntScalar,
        solver: diffrax.AbstractSolver = diffrax.Heun(),
    ) -> tuple[Float[Array, "C H W"], Int[Array, ""]]:
        """Exact per-frequency variance of [`spectral_diffusion.ode`][] on the fixed
        grid, and its NFE: any explicit solver is linear per band here, so running the
        real sampler on the Fourier coefficients of an all-ones $z_1$ yields each band's
        multiplier $m_k$, and $v = m^2$."""
        num_steps = check_num_steps(num_steps)
        sample, stats = ode(
            self._band_denoise,
            schedule,
            jnp.ones_like(self.variances),
            num_steps,
            solver=solver,
            return_stats=True,
        )
        return sample**2, stats.num_function_evaluations

    def ode_error(
        self,
        schedule: Schedule,
        num_steps: IntScalar,
        solver: diffrax.AbstractSolver = diffrax.Heun(),
    ) -> dict[str, Float[Array, ""]]:
        """Closed-form `{"w2", "kl", "nfe"}` of the fixed-grid probability-flow ODE."""
        variance, nfe = self.ode_variance(schedule, num_steps, solver)
        return {**self.errors(variance), "nfe": nfe}

    def monte_carlo(
        self,
        sampler: Callable[[Float[Array, "C H W"], PRNGKeyArray], Float[Array, "C H W"]],
        num_samples: IntScalar,
        *,
        key: PRNGKeyArray,
    ) -> dict[str, Float[Array, "..."]]:
        r"""Run a real sampler and measure the same errors from its samples.

        **Arguments:**

        - `sampler`: `sampler(z1, key) -> x` for one example, e.g.
            `lambda z, k: ddim(oracle.denoise, schedule, z, 16, eta=1.0, key=k)`.
        - `key`: split into the initial samples and the samplers' keys.
        - `num_samples`: number of samples (per-frequency variance estimates have
            relative standard error about $\sqrt{1/n}$).

        **Returns:**

        `{"w2", "kl", "variance"}` with `variance` the empirical per-frequency power
        $\operatorname{mean}_n |X_{n,k}|^2$ (the data are zero-mean).
        """
        num_samples = as_integer(num_samples, "num_samples", 2)
        z_key, sampler_key = jax.random.split(key)
        z1 = jax.random.normal(z_key, (num_samples, *self.variances.shape), self.variances.dtype)
        samples = jax.vmap(sampler)(z1, jax.random.split(sampler_key, num_samples))
        variance = jnp.mean(power_spectrum(samples, value_range=None), axis=0)
        return {**self.errors(variance), "variance": variance}
