"""FrameModel implementations: save/load, the one-step maths, clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gencodec.errors import InputError
from gencodec.filters import load_frame_model, load_preprocessor
from gencodec.filters.compact import CompactFilterNet
from gencodec.filters.model import CONFIG_NAME
from gencodec.filters.onestep import OneStepDiffusion, alphas_cumprod


def test_compact_roundtrip_and_locality(compact_dir):
    m = load_frame_model(compact_dir)
    assert isinstance(m, CompactFilterNet) and m.multiple == 2
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = m(x)
        x2 = x.clone()
        x2[..., 0, 0] = 1.0 - x2[..., 0, 0]  # a change beyond the receptive field
        y2 = m(x2)
    assert y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0
    rf = m.receptive_field
    assert torch.equal(y[..., rf + 2:, rf + 2:], y2[..., rf + 2:, rf + 2:])
    assert not torch.equal(y, y2)


def test_onestep_roundtrip_is_deterministic(onestep_dir):
    m = load_frame_model(onestep_dir)
    assert isinstance(m, OneStepDiffusion) and m.multiple == 8
    cfg = json.loads((onestep_dir / CONFIG_NAME).read_text())
    assert cfg["architecture"] == "onestep" and cfg["timestep"] == 999
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        a, b = m(x), m(x)
        single = m(x[1:])
    assert torch.equal(a, b)  # no per-call noise
    assert torch.allclose(a[1:], single, atol=1e-5)  # no per-frame noise either


@pytest.mark.parametrize("ptype", ["epsilon", "v_prediction", "sample"])
def test_onestep_x0_prediction(ptype):
    """z0 follows Eq. 1 for each prediction type (UNet replaced by a known output)."""
    from gencodec.filters.tiny import tiny_onestep

    m = tiny_onestep(prediction_type=ptype) if ptype == "sample" else \
        _with_alpha(tiny_onestep(), ptype)
    seen = {}

    def fake_unet(z, t, encoder_hidden_states, return_dict):
        seen["z"], seen["t"] = z, t
        return (torch.full_like(z, 0.5),)

    def fake_decoder(z0):
        seen["z0"] = z0
        return torch.zeros(z0.shape[0], 3, z0.shape[2] * 4, z0.shape[3] * 4)

    m.unet.forward, m.vae.decoder.forward = fake_unet, fake_decoder
    m.vae.post_quant_conv = None
    with torch.no_grad():
        m(torch.rand(1, 3, 16, 16))
    z, a, s = seen["z"], m.alpha_cumprod, m.scaling_factor
    expect = {"epsilon": (z - (1 - a) ** 0.5 * 0.5) / a ** 0.5,
              "v_prediction": a ** 0.5 * z - (1 - a) ** 0.5 * 0.5,
              "sample": torch.full_like(z, 0.5)}[ptype]
    assert int(seen["t"][0]) == 999
    assert torch.allclose(seen["z0"], expect / s, atol=1e-5)


def _with_alpha(m, ptype):
    m.prediction_type = ptype
    m.alpha_cumprod = float(alphas_cumprod({"beta_schedule": "scaled_linear"})[999])
    return m


def test_plain_diffusers_directory(onestep_dir, tmp_path):
    """A diffusers repository layout (unet/, vae/, scheduler/) plus the static
    embedding loads without gencodec_filter.json; no text encoder is involved."""
    import shutil

    for sub in ("unet", "vae"):
        shutil.copytree(onestep_dir / sub, tmp_path / sub)
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear",
         "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000,
         "prediction_type": "v_prediction"}))
    with pytest.raises(InputError, match="prompt_embeds"):
        load_frame_model(tmp_path)
    shutil.copy(onestep_dir / "prompt_embeds.safetensors", tmp_path)
    m = load_frame_model(tmp_path)
    assert m.prediction_type == "v_prediction" and m.timestep == 999
    assert m.alpha_cumprod == pytest.approx(float(alphas_cumprod({})[999]))


def test_bad_embedding_shape(onestep_dir, tmp_path):
    save_file({"prompt_embeds": torch.zeros(1, 4, 7)}, str(tmp_path / "e.safetensors"))
    with pytest.raises(InputError, match="1 x L x 16"):
        OneStepDiffusion.from_pretrained(onestep_dir, prompt_embeds=tmp_path / "e.safetensors")


def test_unknown_specs_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="no preprocessing model given"):
        load_preprocessor("")
    with pytest.raises(InputError, match="no such directory"):
        load_preprocessor("no-such-model")
    with pytest.raises(InputError, match="is a file"):
        (tmp_path / "f.bin").write_bytes(b"x")
        load_preprocessor(str(tmp_path / "f.bin"))
    (tmp_path / CONFIG_NAME).write_text('{"architecture": "mystery"}')
    with pytest.raises(InputError, match="unknown architecture"):
        load_frame_model(tmp_path)
    with pytest.raises(InputError):  # a hub id, offline: a clear error, no traceback
        load_frame_model("nobody/no-such-repo")


def test_load_preprocessor_on_images(compact_dir, photo):
    pre = load_preprocessor(str(compact_dir), tile=128)
    out = pre(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert not np.array_equal(out, photo)
    np.testing.assert_array_equal(out, pre(photo))


def test_load_preprocessor_dispatches_classic_filters(photo):
    import av

    if "gblur" not in av.filter.filters_available:
        pytest.skip("this FFmpeg build has no gblur")
    blur = load_preprocessor("gblur:sigma=2")
    out = blur(photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < \
        np.abs(np.diff(photo.astype(float), axis=1)).mean()


def test_a_diffc_model_is_not_taken_for_a_preprocessing_model(photo, tmp_path, capsys):
    from PIL import Image

    from gencodec.cli.main import main

    with pytest.raises(InputError, match="'gaussian-spectral' is a DiffC model"):
        load_frame_model("gaussian-spectral")
    Image.fromarray(photo).save(tmp_path / "in.png")
    assert main(["preprocess", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"),
                 "--model", "gaussian-spectral"]) == 2
    err = capsys.readouterr().err
    assert "'gaussian-spectral' is a DiffC model (gaussian-spectral; use it with " \
           "'gencodec encode --codec diffc'" in err and "not a preprocessing model" in err
    assert "registry" not in err  # no longer "no such directory, registry id or hub id"


def test_compact_configs_that_do_not_fit_say_so_in_one_line(compact_dir, tmp_path):
    import json
    import shutil

    def variant(name, **change):
        d = tmp_path / name
        shutil.copytree(compact_dir, d)
        cfg = json.loads((d / CONFIG_NAME).read_text())
        (d / CONFIG_NAME).write_text(json.dumps({**cfg, **change}))
        return d

    cfg = json.loads((compact_dir / CONFIG_NAME).read_text())
    with pytest.raises(InputError) as wider:  # config says 2x the channels of the weights
        load_frame_model(variant("wider", channels=2 * cfg["channels"]))
    message = str(wider.value)
    assert "\n" not in message and "weights do not fit the config" in message
    assert f"conv_in.weight is [{cfg['channels']}, 12, 3, 3] in the file, " \
           f"[{2 * cfg['channels']}, 12, 3, 3] in the model" in message
    with pytest.raises(InputError, match="missing, e.g. body.2.conv1.weight"):
        load_frame_model(variant("deeper", blocks=cfg["blocks"] + 1))
    for bad in ("x", 2.5, True, None):
        with pytest.raises(InputError) as exc:
            load_frame_model(variant(f"bad-{bad}", channels=bad))
        assert str(exc.value).endswith(f"bad compact config: channels must be a whole "
                                       f"number, not {bad!r}")


@pytest.mark.parametrize("scale,k", [(2, 2), (4, 2), (1, 3)])
def test_compact_keep_means_keeps_every_block_mean(scale, k, tmp_path):
    """keep_means = k: the output's k x k block means are the input's (away from the
    clamp), the detail inside the blocks does change, and the option survives saving."""
    torch.manual_seed(0)
    m = CompactFilterNet(channels=8, blocks=1, scale=scale, keep_means=k).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.05)
        m.conv_out.weight.mul_(0.2)  # a correction of a few levels
    assert m.multiple == math.lcm(scale, k)
    side = 12 * m.multiple
    x = 0.25 + 0.5 * torch.rand(2, 3, side, side)  # the output stays inside [0, 1]
    with torch.no_grad():
        y = m(x)
    assert 0.0 < y.min() and y.max() < 1.0
    pooled = torch.nn.functional.avg_pool2d
    torch.testing.assert_close(pooled(y, k), pooled(x, k), rtol=0, atol=1e-6)
    assert (y - x).abs().mean() > 1e-3
    m.save_pretrained(tmp_path)
    again = load_frame_model(tmp_path)
    assert again.config == m.config and again.keep_means == k
    with torch.no_grad():
        torch.testing.assert_close(again(x), y)


def test_compact_keep_means_is_local_and_exports(tmp_path, photo):
    """The block projection widens the receptive field by k - 1 (tiles, aligned to the
    multiple, still equal the whole frame) and stays scriptable and ONNX-exportable."""
    from gencodec.filters.backends import OrtBackend, TorchBackend
    from gencodec.filters.runner import FrameRunner

    torch.manual_seed(1)
    m = CompactFilterNet(channels=8, blocks=1, scale=2, keep_means=2).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.08)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    whole = FrameRunner(TorchBackend(m), tile=2048).run_tensor(x)
    runner = FrameRunner(TorchBackend(m), tile=104)
    assert runner.overlap >= 4 * m.receptive_field and max(x.shape[-2:]) > 104
    tiled = runner.run_tensor(x)
    assert (tiled - whole).abs().max().item() < 1e-4
    torch.jit.script(m)
    ort = FrameRunner(OrtBackend.from_model(m), tile=104).run_tensor(x)
    assert (ort - whole).abs().max().item() < 1e-4


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def test_chroma_low_pass_keeps_luma_and_smooths_chroma():
    """Y = 0.299 R + 0.587 G + 0.114 B is unchanged; the chroma residual x - Y is the
    input's convolved with a unit-sum Gaussian (a flat chroma field stays as it is, a
    random one loses most of its variance); sigma 0 is the identity."""
    from gencodec.filters.compact import ChromaLowPass

    torch.manual_seed(2)
    x = torch.rand(2, 3, 40, 48, dtype=torch.float64)
    lp = ChromaLowPass(1.5).double()  # float32 weights, double arithmetic
    assert lp.radius == 5
    y = lp(x)
    torch.testing.assert_close(_luma(y), _luma(x), rtol=0, atol=1e-7)
    c_in, c_out = x - _luma(x)[:, None], y - _luma(y)[:, None]
    assert c_out.var() < 0.2 * c_in.var()
    # away from the edges, the chroma is the separable Gaussian of the input's
    t = torch.arange(-5, 6, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / 1.5) ** 2)
    g = g / g.sum()
    i, j = 20, 24
    want = torch.einsum("a,b,ncab->nc", g, g, c_in[:, :, i - 5:i + 6, j - 5:j + 6])
    torch.testing.assert_close(c_out[:, :, i, j], want, rtol=0, atol=1e-7)
    flat = torch.tensor([0.7, 0.2, 0.4], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 9, 7)
    torch.testing.assert_close(lp(flat), flat, rtol=0, atol=1e-7)
    assert ChromaLowPass(0.0)(x) is x


def test_compact_chroma_sigma_is_saved_local_and_exports(tmp_path):
    """chroma_sigma: the model's luma is the net's (the low-pass leaves it alone, away
    from the clamp), the receptive field grows by the low-pass radius so tiles still
    equal the whole frame, the option survives saving, and the model scripts and
    exports to ONNX; sigma 0 gives the model without it, output for output."""
    from gencodec.filters.backends import OrtBackend, TorchBackend
    from gencodec.filters.runner import FrameRunner

    torch.manual_seed(3)
    plain = CompactFilterNet(channels=8, blocks=1, scale=2, keep_means=2).eval()
    m = CompactFilterNet(channels=8, blocks=1, scale=2, keep_means=2, chroma_sigma=2.0).eval()
    with torch.no_grad():
        for p in plain.parameters():
            p.normal_(0.0, 0.05)
        plain.conv_out.weight.mul_(0.2)  # a correction of a few levels: no clamping
    m.load_state_dict(plain.state_dict())
    assert m.receptive_field == plain.receptive_field + 6
    skimage = pytest.importorskip("skimage")
    photo = skimage.data.astronaut()[100:400, 60:390]  # more than one tile
    x = 0.25 + 0.5 * torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        a, b = plain(x), m(x)
    assert 0.0 < min(a.min(), b.min()) and max(a.max(), b.max()) < 1.0
    torch.testing.assert_close(_luma(b), _luma(a), rtol=0, atol=1e-5)
    assert (b - a).abs().max() > 1e-3
    m.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert cfg["chroma_sigma"] == 2.0
    again = load_frame_model(tmp_path)
    assert again.config == m.config
    with torch.no_grad():
        torch.testing.assert_close(again(x), b)
    whole = FrameRunner(TorchBackend(m), tile=2048).run_tensor(x)
    runner = FrameRunner(TorchBackend(m), tile=192)
    assert runner.overlap >= 4 * m.receptive_field and max(x.shape[-2:]) > 192
    assert (runner.run_tensor(x) - whole).abs().max().item() < 1e-4
    torch.jit.script(m)
    ort = FrameRunner(OrtBackend.from_model(m), tile=192).run_tensor(x)
    assert (ort - whole).abs().max().item() < 1e-4
    zero = CompactFilterNet(channels=8, blocks=1, scale=2, keep_means=2, chroma_sigma=0.0)
    zero.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.equal(zero.eval()(x), a)


@pytest.mark.parametrize("bad", ["2", True, None, -1.0, 17])
def test_compact_chroma_sigma_bad_config(tmp_path, bad):
    m = CompactFilterNet(channels=4, blocks=0, scale=2)
    m.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    cfg["chroma_sigma"] = bad
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="chroma_sigma"):
        load_frame_model(tmp_path)
