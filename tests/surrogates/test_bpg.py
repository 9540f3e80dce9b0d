"""diff-BPG as a module: shapes, gradients to the input and to QP, bits against QP on
photos, the shipped calibrated rate model, colour and chroma QP, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gencodec.codecs_ext.surrogates import bpg as dbpg
from gencodec.codecs_ext.surrogates import bpg_intra as bi
from gencodec.codecs_ext.surrogates import get_surrogate
from gencodec.codecs_ext.surrogates.bpg_rate import BpgRateModel
from gencodec.errors import InputError

BACKENDS = ["torch"] + (["native"] if bi.native_available() else [])


def as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def photo_crops(skimage_photos):
    return as_batch(skimage_photos["astronaut"][64:128, 160:224],
                    skimage_photos["coffee"][200:264, 300:364])


def test_registered_and_built_by_name():
    s = get_surrogate("bpg", backend="torch")
    assert isinstance(s, dbpg.BpgSurrogate) and s.block_size == 16 and s.chroma == "420"


@pytest.mark.parametrize("backend", [pytest.param("torch", marks=pytest.mark.slow)]
                         + BACKENDS[1:])
def test_gradients_flow_to_the_input_and_to_qp(backend, photo_crops):
    s = dbpg.BpgSurrogate(backend=backend)
    x = photo_crops.clone().requires_grad_()
    qp = torch.tensor([27.0, 38.5], requires_grad=True)
    x_hat, bits = s(x, qp)
    assert x_hat.shape == x.shape and bits.shape == (2,)
    assert torch.isfinite(bits).all() and (bits > 0).all()
    (bits.sum() / 1000 + (x_hat - x).square().mean()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.isfinite(qp.grad).all() and (qp.grad < 0).all()  # higher QP, fewer bits


@pytest.mark.slow
def test_backends_agree_on_a_small_picture(photo_crops):
    if "native" not in BACKENDS:
        pytest.skip("gencodec._native without dbpg")
    x = photo_crops.double()[:, :, :32, :32]
    outs = [dbpg.BpgSurrogate(8, backend=b, terms=0, rate_model=BpgRateModel(8).double())(x, 30)
            for b in ("torch", "native")]
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=1e-9)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-9, atol=1e-6)


def test_bits_rise_as_qp_falls_on_photos(photo_crops):
    s = dbpg.BpgSurrogate()
    with torch.no_grad():
        bits = torch.stack([s(photo_crops, qp)[1] for qp in range(50, 9, -5)])
    assert (bits[1:] > bits[:-1]).all(), bits


def test_quality_rises_as_qp_falls(photo_crops):
    s = dbpg.BpgSurrogate()
    with torch.no_grad():
        mse = [float((s(photo_crops, qp)[0] - photo_crops).square().mean()) for qp in (45, 35, 25)]
    assert mse[0] > mse[1] > mse[2]
    assert 10 * np.log10(1 / mse[2]) > 33  # QP 25 is a high-quality setting


def test_sizes_not_a_multiple_of_the_block_are_padded(photo_crops):
    s = dbpg.BpgSurrogate(backend="torch")
    x = photo_crops[:1, :, :37, :50]
    x_hat, bits = s(x, 30)
    assert x_hat.shape == x.shape and torch.isfinite(bits).all()
    assert float((x_hat - x).abs().mean()) < 0.05


def test_444_option_codes_full_resolution_chroma(photo_crops):
    x = photo_crops[:1, :, :32, :32]
    s = dbpg.BpgSurrogate(8, "4:4:4", backend="torch", rate_model=BpgRateModel(8, "444"))
    x_hat, yl, yc, qp, qpc = s.code(x, 30)
    assert yc.shape == (1, 2, 16, 8, 8) and float(qp) == 27.0
    assert float(qpc) == 33.0  # 4:4:4: the luma QP + x265's chroma offset 6
    assert float(s.code(x, 50)[4]) == 51.0
    s420 = dbpg.BpgSurrogate(8, backend="torch", rate_model=BpgRateModel(8))
    assert s420.code(x, 30)[2].shape == (1, 2, 16, 4, 4)


def test_colour_is_full_range_bt601():
    rgb = torch.tensor([[255.0, 0, 0], [0, 255.0, 0], [0, 0, 255.0], [255, 255, 255]]).T
    ycc = dbpg.rgb_to_ycbcr(rgb.reshape(1, 3, 4, 1))
    torch.testing.assert_close(ycc[0, 0, :, 0], torch.tensor([76.245, 149.685, 29.07, 255.0]))
    torch.testing.assert_close(ycc[0, 1:, 3, 0], torch.tensor([128.0, 128.0]))  # white is grey
    back = dbpg.ycbcr_to_rgb(ycc)
    torch.testing.assert_close(back, rgb.reshape(1, 3, 4, 1), rtol=0, atol=1e-3)


def swscale_planes(image: np.ndarray, pix_fmt: str):
    """The codec's own conversion (PyAV / swscale, full-range BT.601): the frame and its
    Y, Cb, Cr planes as float arrays."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU601", dst_color_range="JPEG")
    return frame, [np.frombuffer(bytes(p), np.uint8).reshape(p.height, p.line_size)[:, :p.width]
                   .astype(np.float64) for p in frame.planes]


@pytest.mark.parametrize("chroma", ["420", "444"])
def test_chroma_planes_follow_the_codecs_conversion(chroma, skimage_photos):
    image = np.array(skimage_photos["astronaut"][100:228, 150:278])
    _, planes = swscale_planes(image, f"yuv{chroma}p")
    ycc = dbpg.rgb_to_ycbcr(torch.from_numpy(image).permute(2, 0, 1)[None].double())[0]
    cbcr = dbpg.swscale_chroma_420(ycc[1:]) if chroma == "420" else ycc[1:]
    diff = np.stack(planes[1:]) - (cbcr + dbpg.SWSCALE_CHROMA_BIAS[chroma]).numpy()
    assert abs(diff.mean()) < 0.1 and np.abs(diff).max() < 1.0  # swscale's 8-bit rounding
    luma = np.abs(planes[0] - ycc[0].numpy())
    assert luma.mean() < 0.3 and luma.max() < 1.0


def test_decoding_follows_the_codecs_conversion(skimage_photos):
    frame, planes = swscale_planes(skimage_photos["coffee"][50:178, 200:328], "yuv420p")
    rgb = frame.reformat(format="rgb24", src_colorspace="ITU601",
                         src_color_range="JPEG").to_ndarray().astype(np.float64)
    s = dbpg.BpgSurrogate(backend="torch")
    ours = s.decode_colour(torch.from_numpy(planes[0])[None],
                           torch.from_numpy(np.stack(planes[1:]))[None]).clamp(0, 255)
    diff = rgb - ours[0].permute(1, 2, 0).numpy()
    assert np.abs(diff.reshape(-1, 3).mean(0)).max() < 0.2 and np.abs(diff).max() < 1.5


def test_x265_qps_are_those_the_surrogate_codes_at(skimage_photos):
    from gencodec.codecs_ext import _hevc

    image = np.ascontiguousarray(skimage_photos["chelsea"][:64, :64])
    streams = [_hevc.encode_frames([image], 64, 64, pix_fmt="yuv420p", colour=_hevc.FULL_RANGE_601,
                                   x265_params={"keyint": 1, **params})
               for params in ({"qp": 30}, {"qp": 27, "ipratio": 1.0}, {"qp": 28, "ipratio": 1.0})]
    assert streams[0] == streams[1] != streams[2]
    # 4:4:4: x265 signals a chroma QP offset of 6 (dbpg.CHROMA_QP_OFFSET)
    streams = [_hevc.encode_frames([image], 64, 64, pix_fmt="yuv444p", colour=_hevc.FULL_RANGE_601,
                                   x265_params={"keyint": 1, "qp": 30, **params})
               for params in ({}, {"cbqpoffs": 6, "crqpoffs": 6}, {"cbqpoffs": 5, "crqpoffs": 5})]
    assert streams[0] == streams[1] != streams[2]
    qp = torch.tensor([0.0, 2.0, 3.0, 30.0, 30.5, 51.0])
    assert dbpg.coded_qp(qp).tolist() == [0.0, 0.0, 0.0, 27.0, 27.5, 48.0]


@pytest.mark.parametrize("chroma,qp", [("420", 22), ("420", 47), ("444", 32)])
def test_reconstruction_psnr_is_close_to_the_real_codec(chroma, qp, skimage_photos):
    from gencodec.codecs_ext import get_codec
    from gencodec.eval.metrics import psnr

    crops = [skimage_photos[name][y:y + 128, x:x + 128] for name, y, x in
             (("astronaut", 20, 200), ("coffee", 200, 300), ("chelsea", 100, 150),
              ("rocket", 200, 250))]
    codec = get_codec("bpg", chroma=chroma)
    real = [psnr(c, codec.decode(codec.encode(c, qp))) for c in crops]
    surrogate = dbpg.BpgSurrogate(chroma=chroma, rate_model=BpgRateModel(16, chroma))
    with torch.no_grad():
        x_hat = surrogate.code(as_batch(*crops), qp)[0]
    ours = [psnr(c, np.asarray(255.0 * x.permute(1, 2, 0))) for c, x in zip(crops, x_hat)]
    assert abs(np.mean(ours) - np.mean(real)) < 1.0, (ours, real)


def test_chroma_qp_follows_hevc_table():
    qp = torch.tensor([10.0, 29.0, 30.0, 35.0, 39.0, 43.0, 44.0, 51.0, 34.5])
    assert bi.chroma_qp(qp, True).tolist() == [10, 29, 29, 33, 35, 37, 38, 45, 33]
    assert bi.chroma_qp(qp, False).tolist() == qp.tolist()
    assert float(bi.qstep_of(torch.tensor(4.0))) == 1.0
    assert float(bi.qstep_of(torch.tensor(10.0))) == 2.0


def test_rate_model_round_trip_and_registry(tmp_path):
    from gencodec.models import MODELS, model_path

    entry = MODELS[dbpg.default_rate_model_id(16, "420")]
    assert model_path(dbpg.default_rate_model_id(16, "420")).is_dir() and entry["sha256"]
    shipped = dbpg.load_rate_model(16, "420")
    shipped.save_pretrained(tmp_path / "copy")
    again = BpgRateModel.from_pretrained(tmp_path / "copy")
    for (k, a), (_, b) in zip(shipped.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="not a diff-BPG rate model"):
        BpgRateModel.from_pretrained(tmp_path / "broken")


def test_a_rate_model_for_another_configuration_is_refused():
    with pytest.raises(InputError, match="rate model is for block 8"):
        dbpg.BpgSurrogate(16, rate_model=BpgRateModel(8))
    with pytest.raises(InputError, match="no calibrated diff-BPG rate model"):
        dbpg.BpgSurrogate(32, "444")


@pytest.mark.parametrize("x,qp,match", [
    (torch.rand(3, 16, 16), 30, "N x 3 x H x W"),
    (torch.rand(1, 4, 16, 16), 30, "N x 3 x H x W"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), 30, "float"),
    (torch.rand(0, 3, 16, 16), 30, "empty"),
    (torch.full((1, 3, 16, 16), float("nan")), 30, "NaN"),
    (torch.rand(1, 3, 16, 16), 52, r"0\.\.51"),
    (torch.rand(1, 3, 16, 16), -1, r"0\.\.51"),
    (torch.rand(1, 3, 16, 16), float("inf"), r"0\.\.51"),
    (torch.rand(2, 3, 16, 16), torch.tensor([30.0, 31.0, 32.0]), "shape"),
])
def test_bad_input_gives_a_clear_error(x, qp, match):
    s = dbpg.BpgSurrogate(backend="torch")
    with pytest.raises(InputError, match=match):
        s(x, qp)


@pytest.mark.parametrize("kwargs,match", [
    ({"block_size": 12}, "block_size"), ({"block_size": 4}, "at least 8"),
    ({"chroma": "422"}, "chroma"), ({"temperature": -1.0}, "temperature"),
    ({"terms": -2}, "terms"), ({"backend": "cuda"}, "backend"), ({"ref_grad": 2.0}, "ref_grad"),
])
def test_bad_options_give_a_clear_error(kwargs, match):
    with pytest.raises(InputError, match=match):
        dbpg.BpgSurrogate(**kwargs)
