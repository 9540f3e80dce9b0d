"""transcode on pictures with an ICC profile (PNG, JPEG, and both looped in a video
container), plain encoding (--model none), the codec tag, and encoder settings that
must be refused rather than ignored. Every check looks at the written file."""

from __future__ import annotations

import fractions
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image, ImageCms

from gencodec.cli.main import main
from gencodec.errors import InputError
from gencodec.filters.pyav import check_transcode, iter_frames, transcode

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def picture_rgb():
    """An even-sized natural crop, at least libx265's 64x64."""
    skimage = pytest.importorskip("skimage")
    return np.ascontiguousarray(skimage.data.astronaut()[100:180, 150:246])


def _loop(picture, dst, n=3):
    """``n`` copies of a picture file's one packet as a 25 fps video stream (what
    ``ffmpeg -loop 1 -i photo.png -c:v copy`` makes)."""
    with av.open(str(picture)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        data = bytes(next(p for p in inp.demux(s) if p.size))
        for i in range(n):
            p = av.Packet(data)
            p.stream, p.pts, p.dts, p.duration = o, i, i, 1
            p.time_base = fractions.Fraction(1, 25)
            out.mux(p)


@pytest.fixture
def icc_inputs(tmp_path, picture_rgb):
    """{name: (path, frames)}: sRGB-ICC-tagged PNG and JPEG, MJPEG in .mkv, PNG in .mov,
    and PNG in .mkv where FFmpeg's command line is here (PyAV will not put PNG there)."""
    im = Image.fromarray(picture_rgb)
    im.save(tmp_path / "icc.png", icc_profile=SRGB_ICC)
    im.save(tmp_path / "icc.jpg", icc_profile=SRGB_ICC, quality=95)
    _loop(tmp_path / "icc.jpg", tmp_path / "mjpeg.mkv")
    _loop(tmp_path / "icc.png", tmp_path / "png.mov")
    inputs = {"png": (tmp_path / "icc.png", 1), "jpeg": (tmp_path / "icc.jpg", 1),
              "mjpeg.mkv": (tmp_path / "mjpeg.mkv", 3), "png.mov": (tmp_path / "png.mov", 3)}
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-loop", "1",
                        "-framerate", "25", "-i", str(tmp_path / "icc.png"), "-c:v", "copy",
                        "-t", "0.12", str(tmp_path / "png.mkv")], check=True, timeout=60)
        inputs["png.mkv"] = (tmp_path / "png.mkv", 3)
    return inputs


def _video(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        f = frames[0]
        return {"frames": len(frames), "tag": s.codec_context.codec_tag,
                "primaries": int(f.color_primaries), "trc": int(f.color_trc),
                "matrix": (int(f.colorspace), int(f.color_range))}


@pytest.mark.slow  # a fresh process: imports and the model load, about 15 s
def test_icc_pictures_transcode_in_a_process_that_survives_gc(compact_dir, icc_inputs,
                                                             tmp_path):
    """The ICC profile's side data used to be read through PyAV's wrappers, which free
    its metadata a second time: the process died at the next garbage collection (exit
    139). One fresh process codes every input and collects garbage after each."""
    outs = {name: tmp_path / f"out-{name.replace('.', '-')}.mp4" for name in icc_inputs}
    script = "; ".join([
        "import gc, sys",
        "from gencodec.cli.main import main",
        "args = sys.argv[1:]",
        "pairs = zip(args[1::2], args[2::2])",
        "rcs = [(main(['transcode', i, o, '--model', args[0], '--crf', '40', '--preset', "
        "'ultrafast', '--no-progress']), gc.collect())[0] for i, o in pairs]",
        "print('rcs', rcs)"])
    argv = [str(compact_dir)]
    for name, (path, _) in icc_inputs.items():
        argv += [str(path), str(outs[name])]
    run = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert f"rcs {[0] * len(icc_inputs)}" in run.stdout, run.stderr[-2000:]
    assert run.stderr.count("ICC profile 'sRGB built-in' carried as colour tags") \
        == len(icc_inputs)
    for name, (_, n) in icc_inputs.items():
        got = _video(outs[name])
        # the sRGB profile as tags: BT.709 primaries, sRGB transfer; HEVC in MP4 as hvc1
        assert (got["frames"], got["primaries"], got["trc"], got["tag"]) == (n, 1, 13, "hvc1")


@pytest.mark.parametrize("name", ["png", "jpeg", "mjpeg.mkv", "png.mov"])
def test_probe_reads_the_icc_profile_from_the_first_packet(icc_inputs, name):
    from gencodec.filters.picture import probe_picture

    path, _ = icc_inputs[name]
    picture = probe_picture(path, 0)
    assert picture.icc == "sRGB built-in"
    assert picture.rgb == name.startswith("png")


def test_icc_profiles_map_to_the_tags_ffmpeg_has():
    from gencodec.filters.picture import icc_colour_tags

    assert icc_colour_tags("sRGB IEC61966-2.1") == (1, 13)
    assert icc_colour_tags("Display P3") == (12, 13)
    assert icc_colour_tags("Adobe RGB (1998)") is None  # FFmpeg has no tag for it
    assert icc_colour_tags("Linear sRGB") is None  # not the sRGB transfer


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_rgb_video_is_coded_with_the_matrix_it_is_tagged_with(picture_rgb, tmp_path, ext):
    """RGB frames (PNG, no ICC profile) coded as YUV: PyAV's own conversion used BT.601
    while the output said "RGB" (colorspace 0) and full range: other colours."""
    Image.fromarray(picture_rgb).save(tmp_path / "plain.png")
    _loop(tmp_path / "plain.png", tmp_path / "plain.mov")
    dst = tmp_path / f"rgb{ext}"
    transcode(tmp_path / "plain.mov", dst, None, crf=4, preset="ultrafast", progress=False)
    assert _video(dst)["matrix"] == (1, 1)  # BT.709, limited range
    got = next(iter_frames(dst)).astype(int)  # decoded with the output's own tags
    assert np.abs(got - picture_rgb).mean() < 2.0


def test_single_frame_hevc_in_mp4_is_written(compact_dir, icc_inputs, tmp_path):
    """x265 gives the packets of a stream shorter than its B-frame delay a dts made from
    a value it never set; the MP4 muxer refused it ("Not yet implemented in FFmpeg")
    on most runs (which garbage it is depends on what ran before: a model, here)."""
    from gencodec.filters import make_runner
    from gencodec.filters.pyav import PreprocessFilter

    filt = PreprocessFilter(make_runner(str(compact_dir), tile=128))
    for i in range(3):
        dst = tmp_path / f"one{i}.mp4"
        counts = transcode(icc_inputs["jpeg"][0], dst, filt, crf=40, preset="ultrafast",
                           progress=False)
        assert counts["frames"] == 1 and _video(dst)["frames"] == 1


def test_implausible_encoder_dts_is_left_to_the_muxer(tmp_path):
    """The rule on its own, with the garbage seen: a dts far before its pts (or after
    it) is dropped; a dts within the reorder delay is kept."""
    from gencodec.filters import pyav

    class Encoder:
        codec_context = type("Ctx", (), {"name": "libx265"})()

        def __init__(self, packets):
            self.packets = packets

        def encode(self, frame):
            return self.packets

    class Muxer:
        def __init__(self):
            self.dts = []

        def mux(self, packet):
            self.dts.append(packet.dts)

    packets = []
    for pts, dts in ((0, -94868921886024), (0, 2), (3, 1), (4, -100)):
        p = av.Packet(b"\0")
        p.pts, p.dts = pts, dts
        packets.append(p)
    out = Muxer()
    pyav._encode(out, Encoder(packets), None, tmp_path / "o.mp4", 0, max_delay=64)
    assert out.dts == [None, None, 1, None]


def test_plain_transcode_with_model_none(testsrc, write_clip, tmp_path, capsys, monkeypatch):
    src, dst = tmp_path / "in.mp4", tmp_path / "plain.mp4"
    frames = testsrc(4, 64, 96)
    write_clip(src, frames, audio=False)
    assert main(["transcode", str(src), str(dst), "--model", "none", "--crf", "4",
                 "--preset", "ultrafast", "--no-progress"]) == 0
    assert "model: none (plain libx265, no preprocessing)" in capsys.readouterr().err
    decoded, source = list(iter_frames(dst)), list(iter_frames(src))
    assert len(decoded) == 4
    assert np.abs(decoded[0].astype(int) - source[0]).mean() < 1.5  # unfiltered
    # no default model installed and none given is an error that names plain encoding
    from gencodec.models import DEFAULT_PREPROCESSOR, MODELS

    monkeypatch.delitem(MODELS, DEFAULT_PREPROCESSOR)
    assert main(["transcode", str(src), str(tmp_path / "x.mp4")]) == 2
    assert "--model none to encode without preprocessing" in capsys.readouterr().err
    # only transcode has a plain mode
    Image.fromarray(frames[0]).save(tmp_path / "in.png")
    assert main(["preprocess", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"),
                 "--model", "none"]) == 2
    assert "this command needs a preprocessing model" in capsys.readouterr().err


def test_hevc_codec_tag(testsrc, write_clip, tmp_path, capsys):
    src = tmp_path / "in.mp4"
    write_clip(src, testsrc(2, 64, 96), audio=False)
    for ext, tag, want in ((".mp4", None, "hvc1"), (".mov", None, "hvc1"),
                           (".mp4", "hev1", "hev1")):
        dst = tmp_path / f"o-{tag}{ext}"
        transcode(src, dst, None, crf=40, preset="ultrafast", tag=tag, progress=False)
        assert _video(dst)["tag"] == want
    assert main(["transcode", str(src), str(tmp_path / "t.mp4"), "--model", "none",
                 "--tag", "hvc", "--no-progress"]) == 2
    assert "four ASCII characters" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--x265-params", "aq-mod=3"], "--x265-params aq-mod=3: x265 has no option 'aq-mod'"),
    (["--x265-params", "aq-mode=banana"],
     "--x265-params aq-mode=banana: not a value x265 takes for aq-mode"),
    (["--x265-params", "aq-mode=9"], "(x265-params=aq-mode=9:crf=28): Aq-Mode is out of range"),
    (["--crf", "99"], "--crf 99: libx265 takes 0..51"),
    (["-c:v", "libx264", "--crf", "60"], "--crf 60: libx264 takes 0..51"),
])
def test_encoder_settings_are_refused_in_one_line(testsrc, write_clip, tmp_path, capfd,
                                                  argv, message):
    """libx265 skips an unknown key or a bad value with a warning nobody saw, x264
    clamps a CRF out of range, and x265 printed its own text and an errno."""
    src = tmp_path / "in.mp4"
    write_clip(src, testsrc(2, 64, 96), audio=False)
    capfd.readouterr()
    assert main(["transcode", str(src), str(tmp_path / "o.mp4"), "--model", "none",
                 "--no-progress", *argv]) == 2
    err = capfd.readouterr().err
    assert err == f"gencodec: error: {err.split('error: ', 1)[1]}"  # nothing else
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    with pytest.raises(InputError):  # the same check without the CLI
        check_transcode(src, tmp_path / "o.mp4", **{"x265_params": "aq-mod=3"})


def test_progress_bar_stays_out_of_a_redirected_stderr(testsrc, write_clip, tmp_path,
                                                       capfd):
    src = tmp_path / "in.mkv"
    write_clip(src, testsrc(3, 64, 96), audio=False)
    capfd.readouterr()
    transcode(src, tmp_path / "o.mkv", None, crf=40, preset="ultrafast", progress=True)
    assert "frame" not in capfd.readouterr().err  # stderr is not a terminal here
