"""The OSDiff model interface on tiny random backbones: shapes, gradients, frozen parts,
zero-initialised control, Eq. 8."""

from __future__ import annotations

import pytest
import torch

from gencodec.osdiff.model import OSDiff, OSDiffConfig


@pytest.fixture(scope="module")
def fresh(osdiff_dirs):
    torch.manual_seed(0)
    return OSDiff.from_backbone(osdiff_dirs[0], OSDiffConfig.tiny())


def test_forward_shapes_rate_and_gradients(fresh):
    x = torch.rand(2, 3, 32, 48)
    out = fresh(x, training=True, decode=True)
    assert out.y0.shape == out.y_c.shape == out.y_r.shape == (2, 4, 16, 24)
    assert out.x_hat.shape == x.shape and 0 <= out.x_hat.min() and out.x_hat.max() <= 1
    assert set(out.likelihoods) == {"y", "z"} and out.bpp.shape == (2,)
    bits = -sum(torch.log2(v[0]).sum() for v in out.likelihoods.values())
    assert torch.isclose(out.bpp[0], bits / (32 * 48))
    loss = out.bpp.mean() + ((out.y_r - out.y0) ** 2).mean() + 2 * ((out.y_c - out.y0) ** 2).mean()
    loss.backward()
    trainable = fresh.trainable_parameters()
    assert all(p.grad is not None for p in trainable)
    fresh.zero_grad()
    # every trained weight of the latent codec gets a non-zero gradient from the rate and
    # Eq. 11, on a latent large enough that some z round away from 0 at initialisation
    # (h_a shrinks its input ~25-fold; were every z_hat 0, h_s's first weights would see
    # zero inputs). The control branch's gradients are zero through its zero-initialised
    # injections, hence only "not None" above.
    y0 = 30 * torch.randn(2, 4, 16, 24, generator=torch.Generator().manual_seed(0))
    y_c, _, liks = fresh.latent_codec(y0, training=True)
    rate = sum(-torch.log2(v).sum() for v in liks.values())
    (rate + ((y_c - y0) ** 2).sum()).backward()
    dead = [n for n, p in fresh.latent_codec.named_parameters()
            if not n.endswith("quantiles") and not (p.grad is not None and p.grad.abs().sum() > 0)]
    assert not dead, dead
    assert all(not p.requires_grad for p in fresh.vae.parameters())
    assert all(not p.requires_grad for p in fresh.unet.parameters())
    assert not set(map(id, fresh.aux_parameters())) & set(map(id, trainable))
    fresh.zero_grad()
    fresh.aux_loss().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fresh.aux_parameters())
    fresh.zero_grad()


def test_latent_codec_runs_in_float32_under_autocast(fresh):
    """Under bf16 autocast (fp16 on a GPU alike) the backbone runs in low precision but
    the latent codec, its likelihoods and the rate stay float32 (1e-9, the likelihood
    floor, is below fp16's range)."""
    x = torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fresh(x, training=True)
    assert out.likelihoods["y"].dtype == out.likelihoods["z"].dtype == torch.float32
    assert out.y_c.dtype == out.bpp.dtype == torch.float32
    assert float(out.likelihoods["y"].detach().min()) > 0 and torch.isfinite(out.bpp).all()


def test_zero_initialised_control_leaves_the_unet_alone(fresh):
    """Fresh control branch: every injection is a zero convolution, so eps is the
    plain UNet's and Eq. 8 is DDPM's x0 prediction."""
    y_t, y_c = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    t = torch.tensor([999])
    with torch.no_grad():
        plain = fresh.unet(y_t, t, fresh.context(1)).sample
        eps = fresh.eps(y_t, t, y_c)
        y_r = fresh.denoise(y_c, y_t)
    assert torch.allclose(eps, plain, atol=1e-5)
    a = fresh.alphas_cumprod[999]
    assert torch.allclose(y_r, (y_t - (1 - a).sqrt() * plain) / a.sqrt(), atol=1e-4)


def test_control_changes_eps_when_trained(osdiff_model):
    y_t, t = torch.randn(1, 4, 16, 16), torch.tensor([999])
    with torch.no_grad():
        a = osdiff_model.eps(y_t, t, torch.zeros(1, 4, 16, 16))
        b = osdiff_model.eps(y_t, t, torch.ones(1, 4, 16, 16))
    assert (a - b).abs().max() > 1e-4


def test_unet_features(osdiff_model):
    """The features are those the UNet's own forward pass computes: conv_in's output,
    its down blocks' skip features and the middle block's output."""
    z = torch.randn(2, 4, 16, 16)
    t = torch.tensor([10, 500])
    feats = osdiff_model.unet_features(z, t)
    # conv_in, one resnet per level, one downsampler, then the middle block
    assert [f.shape[1:] for f in feats] == [(8, 16, 16), (8, 16, 16), (8, 8, 8), (16, 8, 8),
                                            (16, 8, 8)]
    unet, seen = osdiff_model.unet, []
    hooks = [unet.conv_in.register_forward_hook(lambda m, i, o: seen.append(o))]
    hooks += [b.register_forward_hook(lambda m, i, o: seen.extend(o[1]))
              for b in unet.down_blocks]
    hooks.append(unet.mid_block.register_forward_hook(lambda m, i, o: seen.append(o)))
    try:
        with torch.no_grad():
            unet(z, t, encoder_hidden_states=osdiff_model.context(2))
    finally:
        for h in hooks:
            h.remove()
    assert len(seen) == len(feats)
    for mine, theirs in zip(feats, seen):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_shared_noise_is_deterministic(osdiff_model):
    a = osdiff_model.shared_noise((1, 4, 8, 8))
    assert torch.equal(a, osdiff_model.shared_noise((1, 4, 8, 8)))
    assert abs(float(a.mean())) < 0.3 and 0.7 < float(a.std()) < 1.3


def test_rate_model_save_load_round_trip(osdiff_model, osdiff_dirs, tmp_path):
    osdiff_model.save_rate_model(tmp_path / "r")
    again = OSDiff.from_backbone(osdiff_dirs[0], osdiff_model.config)
    again.load_rate_model(tmp_path / "r")
    for k, v in osdiff_model.trainable_state_dict().items():
        assert torch.equal(v, again.trainable_state_dict()[k]), k
    with pytest.raises(ValueError, match="config differs"):
        OSDiff.from_backbone(osdiff_dirs[0], OSDiffConfig.tiny(
            m=32, slices=(4, 4, 8, 16))).load_rate_model(tmp_path / "r")


def test_config_json_round_trip():
    import json

    cfg = OSDiffConfig.tiny(lambda_rate=2.0)
    assert OSDiffConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown"):
        OSDiffConfig.from_dict({"nope": 1})
