import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import spectral_diffusion as sd
from spectral_diffusion.data import builtin_images


NUM_SAMPLES = 600


@pytest.fixture(scope="module")
def setup():
    x, _ = builtin_images(16, names=["astronaut"])
    oracle = sd.GaussianSpectral.from_image(x[0])
    return oracle, sd.spectral_schedule(sd.rapsd(x[0]))


def agree(mc, closed, oracle):
    """Monte Carlo per-frequency variance matches the closed form; so do the metrics."""
    ratio = np.asarray(mc["variance"] / closed)
    # Each frequency's estimate has relative s.e. ~ sqrt(1/n) (sqrt(2/n) for real ones).
    assert abs(ratio.mean() - 1) < 0.01 and ratio.std() < 3 / np.sqrt(NUM_SAMPLES)
    errors = oracle.errors(closed)
    np.testing.assert_allclose(mc["w2"], errors["w2"], rtol=0.1, atol=2e-3)
    np.testing.assert_allclose(mc["kl"], errors["kl"], rtol=0.1, atol=5e-3)


def test_monte_carlo_ddim(setup):
    oracle, schedule = setup
    mc = oracle.monte_carlo(
        lambda z, k: sd.ddim(oracle.denoise, schedule, z, 12), NUM_SAMPLES, key=jax.random.key(0)
    )
    agree(mc, oracle.ancestral_variance(schedule, 12, eta=0.0), oracle)


def test_monte_carlo_ddpm(setup):
    oracle, schedule = setup
    mc = oracle.monte_carlo(
        lambda z, k: sd.ddim(oracle.denoise, schedule, z, 12, eta=1.0, key=k),
        NUM_SAMPLES,
        key=jax.random.key(1),
    )
    agree(mc, oracle.ancestral_variance(schedule, 12, eta=1.0), oracle)


def test_monte_carlo_sde(setup):
    oracle, schedule = setup
    mc = oracle.monte_carlo(
        lambda z, k: sd.sde(oracle.denoise, schedule, z, 12, key=k),
        NUM_SAMPLES,
        key=jax.random.key(2),
    )
    agree(mc, oracle.euler_maruyama_variance(schedule, 12), oracle)


def test_monte_carlo_ode_heun(setup):
    oracle, schedule = setup
    mc = oracle.monte_carlo(
        lambda z, k: sd.ode(oracle.denoise, schedule, z, 6), NUM_SAMPLES, key=jax.random.key(3)
    )
    variance, nfe = oracle.ode_variance(schedule, 6)
    assert int(nfe) == 12
    agree(mc, variance, oracle)


def test_wiener_denoiser_is_the_posterior_mean(setup, getkey):
    oracle, _ = setup
    x = oracle.sample(2000, key=getkey())
    lam = jnp.asarray(0.7)
    alpha, sigma = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
    z = alpha * x + sigma * jax.random.normal(getkey(), x.shape)
    residual = jax.vmap(lambda z: oracle.denoise(z, lam))(z) - x
    # Orthogonality principle: the posterior-mean residual is uncorrelated with z at
    # every frequency (normalised correlation ~ N(0, 1/n) per frequency).
    r_hat, z_hat = jnp.fft.fft2(residual, norm="ortho"), jnp.fft.fft2(z, norm="ortho")
    cross = jnp.abs(jnp.mean(r_hat * jnp.conj(z_hat), axis=0))
    scale = jnp.sqrt(jnp.mean(jnp.abs(r_hat) ** 2, axis=0) * jnp.mean(jnp.abs(z_hat) ** 2, axis=0))
    assert float(jnp.max(cross / scale)) < 5 / np.sqrt(len(x))
    # A shrunk estimate is not the posterior mean: the same statistic sees it.
    biased = 0.8 * jax.vmap(lambda z: oracle.denoise(z, lam))(z) - x
    b_hat = jnp.fft.fft2(biased, norm="ortho")
    assert float(jnp.max(jnp.abs(jnp.mean(b_hat * jnp.conj(z_hat), axis=0)) / scale)) > 5 / np.sqrt(
        len(x)
    )
    # Samples have the oracle's spectrum.
    power = jnp.mean(jnp.abs(jnp.fft.fft2(x, norm="ortho")) ** 2, axis=0)
    assert abs(float(jnp.mean(power / oracle.variances)) - 1) < 0.02


def test_convergence_orders():
    """DDIM is first order, Heun second: W2 (a squared distance) falls as N^-2p."""
    x, _ = builtin_images(16, names=["coffee"])
    oracle = sd.GaussianSpectral.from_image(x[0])
    schedule = sd.Cosine()
    steps = np.array([128, 256, 512])
    ddim = [float(oracle.ddim_error(schedule, int(n))["w2"]) for n in steps]
    heun = [float(oracle.ode_error(schedule, int(n) // 2)["w2"]) for n in steps]
    ddim_order = -np.polyfit(np.log(steps), np.log(ddim), 1)[0] / 2
    heun_order = -np.polyfit(np.log(steps), np.log(heun), 1)[0] / 2
    assert 0.85 < ddim_order < 1.15
    assert heun_order > 1.8


def test_oracle_errors_vanish_for_exact_variances(setup):
    oracle, _ = setup
    errors = oracle.errors(oracle.variances)
    assert float(errors["w2"]) == 0 and abs(float(errors["kl"])) < 1e-7
    doubled = oracle.errors(2 * oracle.variances)
    np.testing.assert_allclose(doubled["kl"], 0.5 * (2 - 1 - np.log(2)), rtol=1e-5)
    np.testing.assert_allclose(doubled["w2"], (np.sqrt(2) - 1) ** 2, rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="finite and positive"):
        sd.GaussianSpectral(jnp.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="outside"):
        sd.GaussianSpectral.from_image(jnp.full((1, 4, 4), 3.0))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        sd.GaussianSpectral.from_image(jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match="`num_samples`"):
        sd.GaussianSpectral.from_image(jnp.zeros((1, 4, 4))).monte_carlo(
            lambda z, k: z, 1, key=jax.random.key(0)
        )
    assert isinstance(diffrax.Heun(), diffrax.AbstractSolver)
