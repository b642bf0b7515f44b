import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import RUNTIME_ERRORS, tree_allclose

import spectral_diffusion as sd
from spectral_diffusion.data import builtin_images


SHAPE = (3, 8, 8)


@pytest.fixture(scope="module")
def images():
    x, _ = builtin_images(8, names=["astronaut", "coffee", "grass"])
    return jnp.asarray(x)


@pytest.fixture(scope="module")
def oracle(images):
    return sd.GaussianSpectral.from_image(images[0])


def test_ode_euler_is_ddim(oracle, getkey):
    z1 = jax.random.normal(getkey(), SHAPE)
    for schedule in (sd.Cosine(), sd.EDM(), sd.spectral_schedule(sd.rapsd(np.ones(SHAPE) * 0.2))):
        a = sd.ddim(oracle.denoise, schedule, z1, 12)
        b, stats = sd.ode(
            oracle.denoise, schedule, z1, 12, solver=diffrax.Euler(), return_stats=True
        )
        assert tree_allclose(a, b, rtol=1e-4, atol=1e-4)
        assert int(stats.num_function_evaluations) == 12


def counting(denoise):
    calls = {"n": 0}

    def wrapped(z, lam, cond):
        jax.debug.callback(lambda: calls.__setitem__("n", calls["n"] + 1))
        return denoise(z, lam, cond)

    return wrapped, calls


@pytest.mark.parametrize("solver", [diffrax.Euler(), diffrax.Heun(), diffrax.Tsit5()])
def test_ode_reports_nfe(oracle, solver, getkey):
    denoise, calls = counting(oracle.denoise)
    z1 = jax.random.normal(getkey(), SHAPE)
    sample, stats = sd.ode(denoise, sd.Cosine(), z1, 5, solver=solver, return_stats=True)
    jax.block_until_ready(sample)
    assert int(stats.num_function_evaluations) == calls["n"]


@pytest.mark.parametrize(
    "sampler",
    [
        lambda d, z, k: sd.ddim(d, sd.Cosine(), z, 5, return_stats=True),
        lambda d, z, k: sd.ddim(d, sd.Cosine(), z, 5, eta=1.0, key=k, return_stats=True),
        lambda d, z, k: sd.sde(d, sd.Cosine(), z, 5, key=k, return_stats=True),
    ],
    ids=["ddim", "ddpm", "sde"],
)
def test_every_sampler_reports_stats_the_same_way(oracle, sampler, getkey):
    denoise, calls = counting(oracle.denoise)
    sample, stats = sampler(denoise, jax.random.normal(getkey(), SHAPE), getkey())
    jax.block_until_ready(sample)
    assert sample.shape == SHAPE and isinstance(stats, sd.SampleStats)
    assert int(stats.num_function_evaluations) == calls["n"] == 5


def test_ode_adaptive_agrees_with_a_fine_grid(oracle, getkey):
    z1 = jax.random.normal(getkey(), SHAPE)
    schedule = sd.EDM()
    adaptive, stats = sd.ode(
        oracle.denoise,
        schedule,
        z1,
        solver=diffrax.Tsit5(),
        rtol=1e-5,
        atol=1e-5,
        return_stats=True,
    )
    fine = sd.ode(oracle.denoise, schedule, z1, 256)
    assert 0 < int(stats.num_function_evaluations) < 4096
    np.testing.assert_allclose(adaptive, fine, atol=2e-3)


def test_ddim_counts_one_call_per_step(oracle, getkey):
    denoise, calls = counting(oracle.denoise)
    jax.block_until_ready(sd.ddim(denoise, sd.Cosine(), jax.random.normal(getkey(), SHAPE), 7))
    assert calls["n"] == 7


def test_guidance_identities(oracle, getkey):
    z = jax.random.normal(getkey(), SHAPE)

    def denoise(z, lam, cond):
        # Conditional and unconditional branches differ by a known offset.
        return oracle.denoise(z, lam) + (0.0 if cond is None else cond)

    lam = jnp.asarray(1.5)
    cond, uncond = denoise(z, lam, 0.3), denoise(z, lam, None)
    assert tree_allclose(sd.guided(denoise, 1.0)(z, lam, 0.3), cond)
    assert tree_allclose(sd.guided(denoise, 0.0)(z, lam, 0.3), uncond)
    assert tree_allclose(sd.guided(denoise, 3.0)(z, lam, 0.3), uncond + 3.0 * (cond - uncond))
    inside = sd.guided(denoise, 3.0, interval=(0.0, 2.0))
    outside = sd.guided(denoise, 3.0, interval=(2.0, 5.0))
    assert tree_allclose(inside(z, lam, 0.3), uncond + 3.0 * (cond - uncond))
    assert tree_allclose(outside(z, lam, 0.3), cond)
    # The null conditioning can be chosen (e.g. a null class).
    to_zero = sd.guided(denoise, 2.0, unconditional=lambda c: 0.0)
    assert tree_allclose(to_zero(z, lam, 0.3), oracle.denoise(z, lam) + 0.6)
    with pytest.raises(ValueError, match="lam_lo <= lam_hi"):
        sd.guided(denoise, 2.0, interval=(3.0, 1.0))


def test_guided_sampler_uses_two_calls_per_step(oracle, getkey):
    base, calls = counting(lambda z, lam, cond: oracle.denoise(z, lam))
    jax.block_until_ready(
        sd.ddim(sd.guided(base, 2.0), sd.Cosine(), jax.random.normal(getkey(), SHAPE), 5)
    )
    assert calls["n"] == 10


def test_identity_tdas_equals_plain_sampler(oracle, getkey):
    identity = sd.TDAS(
        frequency=sd.FrequencyFilter(radii=[0.5], rates=[1.0]),
        space=sd.SpaceFilter(jnp.ones(SHAPE)),
    )
    z1, key = jax.random.normal(getkey(), SHAPE), getkey()
    schedule = sd.Cosine()
    plain = sd.ddim(oracle.denoise, schedule, z1, 6, eta=1.0, key=key)
    filtered = sd.ddim(oracle.denoise, schedule, z1, 6, eta=1.0, key=key, noise_filter=identity)
    assert tree_allclose(plain, filtered, atol=1e-5)
    plain = sd.sde(oracle.denoise, schedule, z1, 6, key=key)
    filtered = sd.sde(oracle.denoise, schedule, z1, 6, key=key, noise_filter=identity)
    assert tree_allclose(plain, filtered, atol=1e-4)
    assert tree_allclose(sd.TDAS()(z1), z1)


def test_frequency_filter_shapes_white_noise(getkey):
    filt = sd.FrequencyFilter(radii=[0.5], rates=[0.25])
    noise = jax.random.normal(getkey(), (512, 1, 16, 16))
    out = filt(noise)
    assert out.dtype == noise.dtype
    power = np.asarray(sd.power_spectrum(out, value_range=None)).mean((0, 1))
    np.testing.assert_allclose(power, np.asarray(filt.gain(16, 16)) ** 2, rtol=0.2)


def test_estimate_frequency_filter_undoes_known_excess(images):
    # "Generated" images carry 2x the reference amplitude above half the Nyquist radius.
    excess = sd.FrequencyFilter(radii=[0.5], rates=[2.0])
    generated = excess(images)
    estimate = sd.estimate_frequency_filter(images, generated, quantiles=(0.9,))
    np.testing.assert_allclose(estimate.rates, [0.5], rtol=1e-3)
    np.testing.assert_allclose(estimate.radii, [0.5], rtol=1e-6)
    np.testing.assert_allclose(estimate(generated), images, atol=1e-4)
    # Two levels on a smooth excess give two increasing zones with stronger rates outside.
    ramp = sd.FrequencyFilter(radii=[0.3, 0.6, 0.9], rates=[1.2, 1.6, 2.4])(images)
    two = sd.estimate_frequency_filter(images, ramp)
    assert np.all(np.diff(np.asarray(two.radii)) > 0) and np.all(np.diff(np.asarray(two.rates)) < 0)
    with pytest.raises(ValueError, match="must share"):
        sd.estimate_frequency_filter(images, images[:, :1])


def test_space_filter_from_images(images):
    space = sd.SpaceFilter.from_images(images, softness=0.5)
    assert space.weights.shape == images.shape[1:]
    np.testing.assert_allclose(jnp.mean(space.weights**2), 1.0, rtol=1e-5)
    flat = sd.SpaceFilter.from_images(images, softness=0.0)
    np.testing.assert_allclose(flat.weights, 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="empty data set"):
        sd.SpaceFilter.from_images(jnp.zeros((0, *SHAPE)))


@pytest.mark.parametrize(
    "sampler",
    [
        lambda d, s, z, k: sd.ddim(d, s, z, 6),
        lambda d, s, z, k: sd.ddim(d, s, z, 6, eta=1.0, key=k),
        lambda d, s, z, k: sd.ode(d, s, z, 6),
        lambda d, s, z, k: sd.sde(d, s, z, 6, key=k),
    ],
    ids=["ddim", "ddpm", "ode", "sde"],
)
def test_samplers_accept_per_example_schedules(sampler, images, getkey):
    schedules = sd.spectral_schedule(sd.rapsd(images))  # knots (3, 64)
    oracles = jax.vmap(sd.GaussianSpectral.from_image)(images)
    z1 = jax.random.normal(getkey(), images.shape)
    keys = jax.random.split(getkey(), len(images))
    run = eqx.filter_jit(jax.vmap(lambda o, s, z, k: sampler(o.denoise, s, z, k)))
    batched = run(oracles, schedules, z1, keys)
    one = sampler(
        sd.GaussianSpectral.from_image(images[1]).denoise,
        sd.PiecewiseLinear(schedules.knots[1]),
        z1[1],
        keys[1],
    )
    assert tree_allclose(batched[1], one, rtol=1e-4, atol=1e-4)
    # One key per example: the batch size does not change a sample.
    smaller = run(
        jax.tree.map(lambda a: a[:2], oracles),
        jax.tree.map(lambda a: a[:2], schedules),
        z1[:2],
        keys[:2],
    )
    assert tree_allclose(smaller[1], batched[1], rtol=1e-5, atol=1e-5)


def test_bad_input(oracle):
    schedule = sd.Cosine()
    nan = jnp.full(SHAPE, jnp.nan)
    with pytest.raises(ValueError, match="`z1` contains NaN"):
        sd.ddim(oracle.denoise, schedule, nan, 4)
    with pytest.raises(RUNTIME_ERRORS, match="`z1` contains NaN"):
        jax.block_until_ready(jax.jit(lambda z: sd.ddim(oracle.denoise, schedule, z, 4))(nan))
    broken = lambda z, lam, cond: z * jnp.nan  # noqa: E731
    for sampler in (
        lambda: sd.ddim(broken, schedule, jnp.ones(SHAPE), 4),
        lambda: sd.ode(broken, schedule, jnp.ones(SHAPE), 4),
        lambda: sd.sde(broken, schedule, jnp.ones(SHAPE), 4, key=jax.random.key(0)),
    ):
        with pytest.raises(ValueError, match="denoiser returned non-finite"):
            sampler()
    with pytest.raises(RUNTIME_ERRORS, match="denoiser returned non-finite"):
        jax.block_until_ready(jax.jit(lambda z: sd.ddim(broken, schedule, z, 4))(jnp.ones(SHAPE)))
    with pytest.raises(ValueError, match="`key` is required"):
        sd.ddim(oracle.denoise, schedule, jnp.ones(SHAPE), 4, eta=1.0)
    with pytest.raises(ValueError, match="`num_steps` must be an integer >= 1"):
        sd.ddim(oracle.denoise, schedule, jnp.ones(SHAPE), 0)
    with pytest.raises(ValueError, match=r"`eta` must be a number in \[0, 1\]"):
        sd.ddim(oracle.denoise, schedule, jnp.ones(SHAPE), 4, eta=2.0)
    with pytest.raises(ValueError, match="map over the batch"):
        sd.ddim(
            oracle.denoise,
            sd.PiecewiseLinear(jnp.array([[2.0, 1.0], [3.0, 1.0]])),
            jnp.ones(SHAPE),
            4,
        )
    with pytest.raises(ValueError, match="adaptive solves only"):
        sd.ode(oracle.denoise, schedule, jnp.ones(SHAPE), 4, rtol=1e-3)


def _wiener(variances, z, lam):
    alpha, sigma = np.sqrt(1 / (1 + np.exp(-lam))), np.sqrt(1 / (1 + np.exp(lam)))
    gain = alpha * variances / (alpha**2 * variances + sigma**2)
    return np.fft.ifft2(gain * np.fft.fft2(z)).real


def test_samplers_honour_float64():
    # Under x64 with a float64 z1, the grid, the schedule values and the solver
    # times are float64: DDIM and Heun agree with a float64 NumPy reference to 1e-10
    # (anything computed in float32 on the way would be off by ~1e-7).
    rng = np.random.default_rng(0)
    image, z1 = rng.uniform(-1, 1, SHAPE), rng.normal(size=SHAPE)
    num_steps = 8
    t = 1.0 - np.arange(num_steps + 1) / num_steps
    a, b = np.arctan(np.exp(-7.5)), np.arctan(np.exp(7.5))  # Cosine(-15, 15)
    lam = -2.0 * np.log(np.tan(a + t * (b - a)))
    alpha, sigma = np.sqrt(1 / (1 + np.exp(-lam))), np.sqrt(1 / (1 + np.exp(lam)))
    with jax.enable_x64(True):
        oracle = sd.GaussianSpectral.from_image(jnp.asarray(image))
        variances = np.asarray(oracle.variances)
        assert variances.dtype == np.float64
        ddim = sd.ddim(oracle.denoise, sd.Cosine(), jnp.asarray(z1), num_steps)
        heun = sd.ode(oracle.denoise, sd.Cosine(), jnp.asarray(z1), num_steps // 2)
    assert ddim.dtype == heun.dtype == np.float64

    z = z1.copy()
    for i in range(num_steps):
        x_hat = _wiener(variances, z, lam[i])
        eps_hat = (z - alpha[i] * x_hat) / sigma[i]
        z = alpha[i + 1] * x_hat + sigma[i + 1] * eps_hat
    np.testing.assert_allclose(np.asarray(ddim), z / alpha[-1], rtol=0, atol=1e-10)

    # Heun takes N / 2 steps on its own grid t_j = 1 - j / (N / 2), in s = e^(-λ/2).
    t_heun = 1.0 - np.arange(num_steps // 2 + 1) / (num_steps // 2)
    s = np.tan(a + t_heun * (b - a))

    def slope(s_i, y):
        lam_i = -2.0 * np.log(s_i)
        alpha_i = np.sqrt(1 / (1 + np.exp(-lam_i)))
        return (y - _wiener(variances, alpha_i * y, lam_i)) / s_i

    y = z1 / np.sqrt(1 / (1 + np.exp(-lam[0])))
    for i in range(len(s) - 1):
        h = s[i + 1] - s[i]
        k1 = slope(s[i], y)
        k2 = slope(s[i + 1], y + h * k1)
        y = y + 0.5 * h * (k1 + k2)
    np.testing.assert_allclose(np.asarray(heun), y, rtol=0, atol=1e-10)
