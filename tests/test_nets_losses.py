import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import pytest
from helpers import tree_allclose

import spectral_diffusion as sd


SHAPE = (3, 8, 8)
COND = sd.Conditioning(jnp.array(1), jnp.array(12.0), jnp.array(-9.0))


def nets(key):
    return {
        "unet": sd.UNet(
            image_size=8,
            base_channels=8,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attention_resolutions=(4,),
            num_heads=2,
            dropout=0.5,
            dropout_resolutions=(4,),
            num_classes=3,
            key=key,
        ),
        "uvit": sd.UViT(
            image_size=8,
            stage_channels=(8, 16),
            dim=16,
            depth=1,
            num_heads=2,
            dropout=0.5,
            num_classes=3,
            key=key,
        ),
    }


@eqx.filter_jit
def perturb(model, key):
    """Random weights everywhere (the zero-initialised heads would hide everything)."""
    params, static = eqx.partition(model, eqx.is_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)  # one draw, not one per leaf
    return eqx.combine(unravel(flat + 0.1 * jax.random.normal(key, flat.shape)), static)


@eqx.filter_jit
def call(net, z, lam, cond, key=None):
    """One network call, compiled once per network (op-by-op dispatch is slow)."""
    return net(z, lam, cond, key=key)


@pytest.mark.parametrize("name", ["unet", "uvit"])
def test_network_contract(name, getkey):
    net = nets(getkey())[name]
    z = jax.random.normal(getkey(), SHAPE)
    out = call(net, z, jnp.array(0.5), COND)
    assert out.shape == SHAPE
    assert jnp.all(out == 0)  # zero-initialised head: the denoiser starts at v = 0
    net = perturb(net, getkey())
    out = call(net, z, jnp.array(0.5), COND)
    # Conditioning reaches the output: label, lam_t and the schedule ends all matter.
    for other in (
        call(net, z, jnp.array(0.5), COND._replace(label=jnp.array(3))),  # null class
        call(net, z, jnp.array(-4.0), COND),
        call(net, z, jnp.array(0.5), COND._replace(logsnr_0=jnp.array(15.0))),
    ):
        assert not jnp.allclose(out, other)
    # Dropout only with a key; deterministic without one.
    assert tree_allclose(out, call(net, z, jnp.array(0.5), COND))
    assert not jnp.allclose(out, call(net, z, jnp.array(0.5), COND, key=getkey()))
    batched = eqx.filter_jit(jax.vmap(lambda z: net(z, jnp.array(0.5), COND)))(jnp.stack([z, z]))
    assert tree_allclose(batched[0], out, atol=1e-5)


@pytest.mark.parametrize("param", [sd.EpsPrediction(), sd.VPrediction(), sd.XPrediction()])
def test_parameterisations_recover_x_and_eps(param, getkey):
    x, eps = jax.random.normal(getkey(), SHAPE), jax.random.normal(getkey(), SHAPE)
    alpha, sigma = jnp.sqrt(0.3), jnp.sqrt(0.7)
    z = alpha * x + sigma * eps
    target = {sd.EpsPrediction: eps, sd.VPrediction: alpha * eps - sigma * x, sd.XPrediction: x}
    out = target[type(param)]
    assert tree_allclose(param.to_x(out, z, alpha, sigma), x, atol=1e-5)
    assert tree_allclose(param.to_eps(out, z, alpha, sigma), eps, atol=1e-5)


def test_denoiser_output_is_x_hat(getkey):
    net = perturb(nets(getkey())["uvit"], getkey())
    z, lam = jax.random.normal(getkey(), SHAPE), jnp.array(1.0)
    alpha, sigma = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
    v = net(z, lam, COND)
    assert tree_allclose(sd.Denoiser(net)(z, lam, COND), alpha * z - sigma * v, atol=1e-5)


def test_weighted_loss_matches_formula(getkey):
    net = perturb(nets(getkey())["uvit"], getkey())
    denoiser = sd.Denoiser(net, sd.EpsPrediction())
    schedule = sd.Cosine()
    x, eps = jax.random.normal(getkey(), SHAPE), jax.random.normal(getkey(), SHAPE)
    t = jnp.array(0.3)
    lam = schedule.logsnr(t)
    alpha, sigma = jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))
    eps_hat = net(alpha * x + sigma * eps, lam, COND)
    expected = (
        0.5 * jax.nn.sigmoid(2.0 - lam) * -schedule.dlogsnr_dt(t) * jnp.mean((eps - eps_hat) ** 2)
    )
    level = sd.ScheduleProposal()(schedule, t)
    loss = sd.WeightedEpsLoss(sd.SigmoidWeighting(2.0))(
        denoiser, schedule, x, eps, level, COND, key=None
    )
    assert tree_allclose(loss, expected, rtol=1e-5)
    unweighted = sd.EpsLoss()(denoiser, schedule, x, eps, level, COND, key=None)
    assert tree_allclose(unweighted, jnp.mean((eps - eps_hat) ** 2), rtol=1e-5)
    # Under another proposal the weight carries 1/p instead of -dlambda/dt.
    truncated = sd.TruncatedProposal(sd.LinearLogSNR(-20.0, 20.0))(schedule, 0.3)
    ratio = truncated.inverse_density / -schedule.dlogsnr_dt(truncated.t)
    x_lam = schedule.logsnr(truncated.t)
    alpha, sigma = jnp.sqrt(jax.nn.sigmoid(x_lam)), jnp.sqrt(jax.nn.sigmoid(-x_lam))
    eps_hat = net(alpha * x + sigma * eps, truncated.logsnr, COND)
    unweighted = sd.EpsLoss()(denoiser, schedule, x, eps, truncated, COND, key=None)
    assert tree_allclose(unweighted, ratio * jnp.mean((eps - eps_hat) ** 2), rtol=1e-4)


def test_multiscale_scores_white_noise_alike_at_every_scale(getkey):
    from spectral_diffusion._losses import _squared_error

    noise = jax.random.normal(getkey(), (3, 64, 64))
    assert abs(float(_squared_error(noise, 8)) - 1.0) < 0.1
    assert float(_squared_error(noise, None)) == pytest.approx(float(jnp.mean(noise**2)))
    smooth = jnp.ones((3, 64, 64))  # all power at DC: coarse scales weigh it up
    assert float(_squared_error(smooth, 8)) > float(_squared_error(smooth, None))


def test_batch_loss_paths_and_stratification(getkey):
    denoiser = sd.Denoiser(perturb(nets(getkey())["uvit"], getkey()))
    x = jnp.clip(jax.random.normal(getkey(), (4, *SHAPE)), -1, 1)
    labels = jnp.array([0, 1, 2, 0])
    per_instance = sd.spectral_schedule(sd.rapsd(x))
    assert sd.schedule_axis(per_instance) == 0 and sd.schedule_axis(sd.Cosine()) is None
    for schedule in (per_instance, sd.Cosine()):
        value = sd.batch_loss(
            sd.VLoss(), denoiser, schedule, x, labels, key=getkey(), num_classes=3
        )
        assert jnp.isfinite(value) and value > 0
    # One schedule per example equals evaluating each example with its own schedule.
    key = getkey()
    batched = sd.batch_loss(
        sd.VLoss(),
        denoiser,
        sd.PiecewiseLinear(per_instance.knots[:1]),
        x[:1],
        labels[:1],
        key=key,
        num_classes=3,
    )
    single = sd.batch_loss(
        sd.VLoss(),
        denoiser,
        sd.PiecewiseLinear(per_instance.knots[0]),
        x[:1],
        labels[:1],
        key=key,
        num_classes=3,
    )
    assert tree_allclose(batched, single, rtol=1e-5)


def test_batch_loss_in_groups_is_the_same_loss(getkey):
    denoiser = sd.Denoiser(perturb(nets(getkey())["uvit"], getkey()))
    x = jnp.clip(jax.random.normal(getkey(), (4, *SHAPE)), -1, 1)
    labels = jnp.array([0, 1, 2, 0])
    key = getkey()
    loss = eqx.filter_jit(sd.batch_loss)
    # Per-example schedules are sliced with the batch, a shared one is not.
    for schedule, groups in ((sd.spectral_schedule(sd.rapsd(x)), 2), (sd.Cosine(), 4)):
        whole = loss(sd.VLoss(), denoiser, schedule, x, labels, key=key, num_classes=3)
        split = loss(
            sd.VLoss(), denoiser, schedule, x, labels, key=key, num_classes=3, groups=groups
        )
        assert tree_allclose(whole, split, rtol=1e-6)
    with pytest.raises(ValueError, match="`groups` 3 must divide the batch size 4"):
        sd.batch_loss(sd.VLoss(), denoiser, sd.Cosine(), x, labels, key=key, groups=3)


def test_batch_loss_groups_the_uvit_transformer_and_keeps_whole_batch_convolutions(getkey):
    """The U-ViT computes only its transformer in groups (its convolutions see the whole
    batch); a network without such a section gets the whole per-example loss in
    groups. The U-ViT's loss and gradients are those of one batch-wide computation,
    also under an outer `jax.vmap` of the gradient."""
    x = jnp.clip(jax.random.normal(getkey(), (4, *SHAPE)), -1, 1)
    labels = jnp.array([0, 1, 2, 0])
    schedule = sd.spectral_schedule(sd.rapsd(x))

    def loss(denoiser, key, groups):
        return sd.batch_loss(
            sd.VLoss(), denoiser, schedule, x, labels, key=key, num_classes=3, groups=groups
        )

    def gradient_jaxpr(denoiser, key, groups) -> str:
        return str(jax.make_jaxpr(lambda k: eqx.filter_grad(loss)(denoiser, k, groups))(key))

    key = getkey()
    for name, net in nets(getkey()).items():
        jaxprs = [gradient_jaxpr(sd.Denoiser(net), key, g) for g in (1, 2)]
        convs = [text.count(" conv_general_dilated[") for text in jaxprs]
        dots = [text.count(" dot_general[") for text in jaxprs]
        assert dots[1] > dots[0], name
        # The U-ViT: whole-batch convolutions; the U-Net: the whole loss in two groups.
        assert convs[1] == (convs[0] if name == "uvit" else 2 * convs[0]), name

    denoiser = sd.Denoiser(perturb(nets(getkey())["uvit"], getkey()))
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    whole, split = value_and_grad(denoiser, key, 1), value_and_grad(denoiser, key, 2)
    assert tree_allclose(whole, split, rtol=1e-5, atol=1e-6)
    keys = jax.random.split(getkey(), 2)
    per_key = eqx.filter_jit(eqx.filter_vmap(value_and_grad, in_axes=(None, 0, None)))
    stacked = per_key(denoiser, keys, 2)
    for i in range(2):
        one = jax.tree.map(lambda a: a[i], stacked)
        assert tree_allclose(one, value_and_grad(denoiser, keys[i], 1), rtol=1e-5, atol=1e-6)
