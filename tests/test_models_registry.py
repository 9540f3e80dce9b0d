"""The model registry: entry fields, sha256 checks and the default preprocessing model
(tiny compact models written to a temporary folder stand in for the trained one)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from gencodec import models
from gencodec.errors import InputError
from gencodec.models import (DEFAULT_PREPROCESSOR, MODELS, NoDefaultModel,
                             default_preprocessor_path, model_path)

FIELDS = {"architecture", "path", "weights", "sha256", "licence", "card"}
OPTIONAL = {"config", "config_sha256"}  # both or neither


def _entry(folder, sha256=None) -> dict:
    """A registry entry for a model folder written by save_pretrained (absolute paths:
    ``models/ / absolute`` is the absolute path)."""
    weights = folder / "model.safetensors"
    return {"architecture": "compact", "path": str(folder), "weights": str(weights),
            "sha256": sha256 or hashlib.sha256(weights.read_bytes()).hexdigest(),
            "licence": "test", "card": str(folder / "README.md")}


@pytest.fixture()
def compact_folder(tmp_path):
    from gencodec.filters.tiny import tiny_compact

    folder = tmp_path / DEFAULT_PREPROCESSOR
    tiny_compact(seed=3).save_pretrained(folder)
    return folder


def test_every_entry_has_the_registry_fields():
    for model_id, entry in MODELS.items():
        assert set(entry) in (FIELDS, FIELDS | OPTIONAL), model_id
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), model_id
        assert entry["weights"].startswith(entry["path"] + "/"), model_id
        if "config" in entry:
            assert re.fullmatch(r"[0-9a-f]{64}", entry["config_sha256"]), model_id
            assert entry["config"].startswith(entry["path"] + "/"), model_id
    # the preprocessing models share their weights: their configs tell them apart
    for model_id in ("gencodec-preprocess-v1", "gencodec-preprocess-v2"):
        assert "config_sha256" in MODELS[model_id], model_id
        model_path(model_id)  # both checks pass on the shipped files


def test_no_default_installed_is_a_clear_input_error(monkeypatch):
    monkeypatch.delitem(MODELS, DEFAULT_PREPROCESSOR, raising=False)
    with pytest.raises(NoDefaultModel) as info:
        default_preprocessor_path()
    assert isinstance(info.value, InputError)
    message = str(info.value)
    assert "no default preprocessing model is installed" in message
    assert DEFAULT_PREPROCESSOR in message and "--model" in message


def test_default_resolves_to_its_checked_folder(monkeypatch, compact_folder):
    from gencodec.filters.model import check_spec, load_frame_model

    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, _entry(compact_folder))
    assert default_preprocessor_path() == compact_folder
    # the registry id is a model spec of its own, resolved through the same check
    assert check_spec(DEFAULT_PREPROCESSOR) == str(compact_folder)
    assert load_frame_model(DEFAULT_PREPROCESSOR).architecture == "compact"


def test_sha256_mismatch_is_refused(monkeypatch, compact_folder):
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, _entry(compact_folder, "0" * 64))
    with pytest.raises(InputError, match=r"has sha256 [0-9a-f]{16}\.\.\., the registry "
                                         r"says 0{16}\.\.\. \(damaged install\?\)"):
        default_preprocessor_path()
    # weights changed after registration: the same refusal
    good = _entry(compact_folder)
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, good)
    weights = compact_folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged install"):
        model_path(DEFAULT_PREPROCESSOR)


def test_config_sha256_mismatch_is_refused(monkeypatch, compact_folder):
    """An entry that names its config refuses a config edited after registration (a
    model that differs from another in its config alone is still checked)."""
    config = compact_folder / "gencodec_filter.json"
    entry = {**_entry(compact_folder), "config": str(config),
             "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()}
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, entry)
    assert model_path(DEFAULT_PREPROCESSOR) == compact_folder
    config.write_text(config.read_text().replace('"chroma_sigma": 0.0', '"chroma_sigma": 3.0'))
    with pytest.raises(InputError, match=r"gencodec_filter.json has sha256 [0-9a-f]{16}\.\.\., "
                                         r"the registry says [0-9a-f]{16}\.\.\. \(damaged "
                                         r"install\?\)"):
        model_path(DEFAULT_PREPROCESSOR)
    config.unlink()
    with pytest.raises(InputError, match="cannot read its config .*No such file"):
        model_path(DEFAULT_PREPROCESSOR)


def test_missing_weights_are_an_input_error(monkeypatch, compact_folder):
    entry = _entry(compact_folder)
    (compact_folder / "model.safetensors").unlink()
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, entry)
    with pytest.raises(InputError, match=f"{DEFAULT_PREPROCESSOR}: cannot read its weights "
                                         ".*No such file or directory"):
        default_preprocessor_path()


def test_shipped_default_matches_its_registry_entry():
    """The trained default is registered: its files are in models/, its sha256 matches
    and it loads as a preprocessing model."""
    assert DEFAULT_PREPROCESSOR in MODELS
    from gencodec.filters.model import load_frame_model

    entry = MODELS[DEFAULT_PREPROCESSOR]
    folder = default_preprocessor_path()
    assert folder == models._HERE / entry["path"]
    assert (models._HERE / entry["card"]).is_file()
    model = load_frame_model(str(folder))
    assert model.architecture == entry["architecture"]


def test_shipped_default_is_the_trained_filter():
    """The shipped weights do what the card says: they change the photo, keep the 2x2
    block means of its luma (BT.601 Y, where nothing is clipped to [0, 1]), blur its
    chroma, and make bpg spend fewer bits at the same QP."""
    skimage = pytest.importorskip("skimage")
    import torch
    from torch.nn.functional import avg_pool2d

    from gencodec.codecs_ext import get_codec
    from gencodec.filters.model import load_frame_model

    model = load_frame_model(DEFAULT_PREPROCESSOR)
    assert model.architecture == "compact" and model.keep_means == 2
    assert model.config.chroma_sigma > 0
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    bpg = get_codec("bpg")
    for photo in (skimage.data.astronaut()[:176, 120:296], skimage.data.coffee()[:128, :128]):
        photo = np.ascontiguousarray(photo)
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            y = model(x)
        assert (y - x).abs().mean() > 0.003  # not the identity
        clipped = avg_pool2d(((y == 0) | (y == 1)).float(), 2).amax(1) > 0
        yx, yy = (x * luma).sum(1, keepdim=True), (y * luma).sum(1, keepdim=True)
        moved = (avg_pool2d(yy, 2) - avg_pool2d(yx, 2)).abs()[:, 0]
        assert moved[~clipped].max() < 1e-5
        def roughness(c):  # mean squared step between neighbours, both directions
            return ((c[..., 1:] - c[..., :-1]) ** 2).mean() + ((c[..., 1:, :] - c[..., :-1, :])
                                                                ** 2).mean()
        assert roughness(y - yy) < 0.5 * roughness(x - yx)  # smoother chroma
        out = np.ascontiguousarray(
            (y[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8))
        for qp in (27, 32, 37):
            assert len(bpg.encode(out, quality=qp)) < 0.97 * len(bpg.encode(photo, quality=qp))


# -- the filter commands take the registry default when --model is omitted -----------------
def _main(capsys, *argv) -> tuple[int, str, str]:
    from gencodec.cli.main import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def registered(monkeypatch, compact_folder):
    """The tiny compact model registered as the default."""
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, _entry(compact_folder))
    return compact_folder


@pytest.fixture()
def photo_png(tmp_path):
    skimage = pytest.importorskip("skimage")
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(np.ascontiguousarray(skimage.data.astronaut()[100:164, 180:260])).save(path)
    return path


def _clip(path, n: int = 4, h: int = 64, w: int = 80) -> None:
    """A short H.264 clip of a moving gradient (video only)."""
    import av

    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            rgb = np.stack([(xx * 4 + i * 8) % 256, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _frames(path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_preprocess_uses_the_default(capsys, tmp_path, registered, photo_png):
    rc, _, err = _main(capsys, "preprocess", photo_png, "-o", tmp_path / "d.webp",
                       "--codec", "webp", "-q", "60")
    assert rc == 0, err
    rc, _, err = _main(capsys, "preprocess", photo_png, "-o", tmp_path / "m.webp",
                       "--codec", "webp", "-q", "60", "--model", registered)
    assert rc == 0, err
    assert (tmp_path / "d.webp").read_bytes() == (tmp_path / "m.webp").read_bytes()
    rc, _, err = _main(capsys, "preprocess", photo_png, "-o", tmp_path / "p.webp",
                       "--codec", "webp", "-q", "60", "--model", compact_plain(tmp_path))
    assert rc == 0, err
    assert (tmp_path / "p.webp").read_bytes() != (tmp_path / "d.webp").read_bytes()


def compact_plain(tmp_path):
    """Another compact model (identity: zero weights), to show that the model matters."""
    import torch

    from gencodec.filters.compact import CompactFilterNet

    model = CompactFilterNet(channels=4, blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    folder = tmp_path / "identity"
    model.save_pretrained(folder)
    return folder


def test_export_uses_the_default(capsys, tmp_path, registered):
    import torch

    from gencodec.filters.model import load_frame_model

    rc, _, err = _main(capsys, "export", "--format", "torchscript", "-o", tmp_path / "f.pt")
    assert rc == 0, err
    scripted = torch.jit.load(str(tmp_path / "f.pt"))
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(scripted(x), load_frame_model(str(registered))(x), atol=1e-6)


def test_pipe_uses_the_default(capsys, monkeypatch, registered):
    import io
    import sys

    from gencodec.filters import make_runner

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 16, 32, 3), dtype=np.uint8)

    class Stream:
        def __init__(self, data=b""):
            self.buffer = io.BytesIO(data)

        def isatty(self):
            return False

    stdout = Stream()
    monkeypatch.setattr(sys, "stdin", Stream(frames.tobytes()))
    monkeypatch.setattr(sys, "stdout", stdout)
    rc, _, err = _main(capsys, "pipe", "--size", "32x16")
    assert rc == 0, err
    got = np.frombuffer(stdout.buffer.getvalue(), np.uint8).reshape(frames.shape)
    runner = make_runner(str(registered))
    assert np.array_equal(got, np.stack([runner(f) for f in frames]))


def test_transcode_uses_the_default_and_none_is_plain(capsys, tmp_path, registered):
    src = tmp_path / "in.mp4"
    _clip(src)
    outs = {}
    for name, extra in (("default", []), ("explicit", ["--model", registered]),
                        ("plain", ["--model", "none"])):
        outs[name] = tmp_path / f"{name}.mp4"
        rc, _, err = _main(capsys, "transcode", src, outs[name], "--crf", "20",
                           "--preset", "ultrafast", *extra)
        assert rc == 0, err
    default, explicit, plain = (_frames(outs[k]) for k in ("default", "explicit", "plain"))
    assert default.shape == plain.shape == (4, 64, 80, 3)
    assert np.array_equal(default, explicit)
    assert np.abs(default.astype(int) - plain.astype(int)).mean() > 2  # the model ran


@pytest.mark.parametrize("command", ["preprocess", "transcode", "pipe", "export"])
def test_commands_refuse_a_damaged_default_and_say_when_none_is_installed(
        command, capsys, monkeypatch, tmp_path, compact_folder, photo_png):
    import io
    import sys

    class Stream:
        buffer = io.BytesIO()

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stdin", Stream())
    monkeypatch.setattr(sys, "stdout", Stream())
    src = tmp_path / "in.mp4"
    _clip(src, n=1)
    argv = {"preprocess": [photo_png, "-o", tmp_path / "o.webp", "-c", "webp"],
            "transcode": [src, tmp_path / "o.mp4"],
            "pipe": ["--size", "32x16"],
            "export": ["--format", "onnx", "-o", tmp_path / "o.onnx"]}[command]
    monkeypatch.setitem(MODELS, DEFAULT_PREPROCESSOR, _entry(compact_folder, "0" * 64))
    rc, _, err = _main(capsys, command, *argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{DEFAULT_PREPROCESSOR}: " in err and "damaged install" in err
    monkeypatch.delitem(MODELS, DEFAULT_PREPROCESSOR)
    rc, _, err = _main(capsys, command, *argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "no default preprocessing model is installed" in err
    assert ("--model none" in err) == (command == "transcode")
    assert not any(p.name.startswith("o.") for p in tmp_path.iterdir())  # nothing written
