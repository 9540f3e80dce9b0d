"""Stock codecs behind the one Codec interface: round trips on the scikit-image photos,
rate and quality moving the right way, the bpp search, odd sizes, options, and damaged
payloads (which must raise BitstreamError and nothing else)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from gencodec import container, imageio
from gencodec.codecs_ext import (CODECS, IMAGE_CODECS, BppResult, Codec, QualityRange,
                                 bits_per_pixel, find_quality_for_bpp, get_codec)
from gencodec.errors import BitstreamError, GencodecError, InputError

#: The stock codecs this file tests (the registry also holds the generative ones).
STOCK_CODECS = ("jpeg", "webp", "bpg", "heif", "avif", "x265")

HAVE_BPGENC = shutil.which("bpgenc") is not None and shutil.which("bpgdec") is not None

#: Five settings per codec from low to high quality.
SETTINGS = {
    "jpeg": [10, 30, 50, 70, 90],
    "webp": [10, 30, 50, 70, 90],
    "bpg": [45, 38, 31, 24, 17],
    "heif": [10, 30, 50, 70, 90],
    "avif": [10, 30, 50, 70, 90],
}

#: Payload file formats as Pillow names them.
PIL_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "heif": "HEIF", "avif": "AVIF"}


@pytest.fixture(scope="module", params=IMAGE_CODECS)
def image_codec(request) -> Codec:
    codec = get_codec(request.param)
    ok, why = codec.available()
    if not ok:
        pytest.skip(f"{request.param} unavailable here: {why}")
    return codec


# -- registry and interface -------------------------------------------------------------

def test_registry():
    assert set(CODECS) >= set(STOCK_CODECS)
    assert IMAGE_CODECS == ("jpeg", "webp", "bpg", "heif", "avif")
    for name, cls in CODECS.items():
        assert cls.name == name and name in container.CODEC_IDS


def test_get_codec_errors():
    with pytest.raises(InputError, match="unknown codec 'nope'"):
        get_codec("nope")
    # the options a codec takes are named, not Python's TypeError text
    with pytest.raises(InputError) as e:
        get_codec("jpeg", foo=1)
    assert str(e.value) == "unknown option foo; jpeg options: subsampling"
    with pytest.raises(InputError, match="bpg options: chroma, use_bpgenc, preset"):
        get_codec("bpg", no_such_option=1)
    with pytest.raises(InputError, match="webp takes no --model"):
        get_codec("webp", model="gaussian-spectral")


def test_decoding_refuses_encoder_options():
    """``decode -O subsampling=444`` (a JPEG's layout is in its stream) and ``-O seed=5``
    (DiffC streams carry their seed) were accepted and silently did nothing."""
    from gencodec.codecs_ext import check_options

    check_options("jpeg", {}, decoding=True)
    check_options("diffc", {"profile": "p.json", "recon": "x0"}, decoding=True)
    with pytest.raises(InputError, match="subsampling is an encoding option of jpeg.*"
                                         r"jpeg decoding options: none"):
        check_options("jpeg", {"subsampling": 444}, decoding=True)
    with pytest.raises(InputError, match="seed is an encoding option of diffc"):
        check_options("diffc", {"seed": 5}, decoding=True)
    check_options("diffc", {"seed": 5})  # encoding takes it


@pytest.mark.parametrize("name", STOCK_CODECS)
def test_interface(name):
    codec = get_codec(name)
    q = codec.quality
    assert isinstance(q, QualityRange)
    assert q.lo < q.hi and q.lo <= q.default <= q.hi and q.step > 0
    better = "higher" if q.higher_is_better else "lower"
    assert f"{better} = better" in q.describe() and q.name in q.describe()
    assert codec.fingerprint == container.ZERO_FINGERPRINT  # stock codec
    assert isinstance(codec.backend(), str) and codec.backend()
    assert name in repr(codec)


def test_quality_directions():
    assert get_codec("jpeg").quality.higher_is_better
    assert (get_codec("bpg").quality.lo, get_codec("bpg").quality.hi) == (0, 51)
    assert not get_codec("bpg").quality.higher_is_better
    assert get_codec("x265").quality.name == "crf"
    assert get_codec("x265", mode="qp").quality.name == "qp"
    assert not get_codec("x265").quality.higher_is_better


def test_bpg_back_end_is_named():
    codec = get_codec("bpg")
    if HAVE_BPGENC:
        assert "bpgenc" in codec.backend()
    else:
        assert codec.backend().startswith("FALLBACK: HEVC intra")
        assert "x265" in codec.backend() and "bpgenc not found" in codec.backend()


def test_quality_out_of_range(image_codec, tiny_image):
    q = image_codec.quality
    for bad in (q.lo - 1, q.hi + 1, float("nan")):
        with pytest.raises(InputError, match=f"{q.name} .* is outside"):
            image_codec.encode(tiny_image, bad)
    with pytest.raises(InputError, match="must be a number"):
        image_codec.encode(tiny_image, "high")


def test_bad_images_are_input_errors(image_codec):
    with pytest.raises(InputError, match="shape"):
        image_codec.encode(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(InputError, match="dtype"):
        image_codec.encode(np.zeros((8, 8, 3), np.int32))
    with pytest.raises(InputError, match="empty"):
        image_codec.encode(np.zeros((0, 8, 3), np.uint8))


# -- round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGE_CODECS)
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
def test_photo_round_trip(name, photo, skimage_photos, half_photos, psnr):
    codec = get_codec(name)
    # the fast codecs at full size, the HEVC/AV1 ones at half size (runtime)
    image = skimage_photos[photo] if name in ("jpeg", "webp") else half_photos[photo]
    data = codec.encode(image)  # default quality
    out = codec.decode(data)
    assert out.shape == image.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    header = container.read_header(data)
    assert (header.codec, header.width, header.height) == (name, image.shape[1], image.shape[0])
    p = psnr(image, out)
    assert 30.0 < p < 60.0, p  # a real lossy reconstruction of this photo
    bpp = bits_per_pixel(data, image)
    assert 0.2 < bpp < 3.0, bpp
    assert bpp == len(data) * 8 / (image.shape[0] * image.shape[1])


def test_psnr_and_rate_rise_with_quality(image_codec, astronaut_crop, psnr):
    points = []
    for q in SETTINGS[image_codec.name]:
        data = image_codec.encode(astronaut_crop, q)
        points.append((q, bits_per_pixel(data, astronaut_crop),
                       psnr(astronaut_crop, image_codec.decode(data))))
    psnrs = [p for _, _, p in points]
    rates = [b for _, b, _ in points]
    assert all(b > a for a, b in zip(psnrs, psnrs[1:])), points
    assert all(b > a for a, b in zip(rates, rates[1:])), points
    assert psnrs[-1] - psnrs[0] > 5.0, points


def test_default_quality_is_used(image_codec, tiny_image):
    assert image_codec.encode(tiny_image) == image_codec.encode(tiny_image,
                                                                image_codec.quality.default)


def test_encode_accepts_other_array_types(image_codec, tiny_image, psnr):
    rgba = np.dstack([tiny_image, np.full((16, 16), 255, np.uint8)])
    assert image_codec.encode(rgba) == image_codec.encode(tiny_image)
    f = tiny_image.astype(np.float32) / 255.0
    assert image_codec.encode(f) == image_codec.encode(tiny_image)
    gray = tiny_image[:, :, 0]
    out = image_codec.decode(image_codec.encode(gray))
    assert out.shape == (16, 16, 3)
    # a PIL image, including a palette one (converted by mode, not coded as indices)
    assert image_codec.encode(Image.fromarray(tiny_image)) == image_codec.encode(tiny_image)
    pal = Image.fromarray(tiny_image).quantize(16)
    assert image_codec.encode(pal) == image_codec.encode(np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("h, w", [(17, 33), (33, 17), (1, 1), (3, 2), (9, 7)])
def test_odd_sizes(image_codec, h, w, skimage_photos, psnr):
    image = np.ascontiguousarray(skimage_photos["chelsea"][100:100 + h, 200:200 + w])
    data = image_codec.encode(image, image_codec.quality.default)
    out = image_codec.decode(data)
    assert out.shape == (h, w, 3)
    if h * w >= 200:
        assert psnr(image, out) > 25.0


def test_payload_is_a_stock_file(image_codec, tiny_image):
    data = image_codec.encode(tiny_image)
    payload = image_codec.payload(data)
    assert len(payload) == len(data) - container.HEADER_SIZE
    if image_codec.name == "bpg":
        if payload.startswith(b"BPG\xfb"):
            return
        assert payload[:1] == b"H" and payload[1] == 0  # 4:2:0 fallback
        assert payload[4:8] in (b"\x00\x00\x00\x01", b"\x00\x00\x01\x40")  # Annex-B start
        return
    with Image.open(io.BytesIO(payload)) as im:
        assert im.format == PIL_FORMATS[image_codec.name]
        assert im.size == (16, 16)


def test_wrong_codec_stream_is_rejected(tiny_image):
    data = get_codec("webp").encode(tiny_image)
    with pytest.raises(BitstreamError, match="'webp', not 'jpeg'"):
        get_codec("jpeg").decode(data)


def test_streams_are_deterministic(image_codec, tiny_image):
    assert image_codec.encode(tiny_image, image_codec.quality.default) == \
        image_codec.encode(tiny_image, image_codec.quality.default)


# -- chroma options ---------------------------------------------------------------------

def _chroma_rich(skimage_photos):
    # saturated colour detail: where 4:4:4 beats 4:2:0
    return np.ascontiguousarray(skimage_photos["coffee"][150:246, 200:328])


@pytest.mark.parametrize("name, option", [("jpeg", "subsampling"), ("avif", "subsampling"),
                                          ("heif", "chroma"), ("bpg", "chroma")])
def test_444_keeps_more_colour_than_420(name, option, skimage_photos, psnr):
    image = _chroma_rich(skimage_photos)
    c420 = get_codec(name, **{option: "420"})
    c444 = get_codec(name, **{option: "444"})
    q = SETTINGS[name][3]
    d420, d444 = c420.encode(image, q), c444.encode(image, q)
    o420, o444 = c420.decode(d420), c444.decode(d444)
    assert o444.shape == image.shape
    assert d420 != d444
    assert psnr(image, o444) > psnr(image, o420)
    # either decoder instance decodes either stream (the stream says how it was made)
    np.testing.assert_array_equal(c420.decode(d444), o444)


def test_jpeg_subsampling_really_changes(skimage_photos):
    from PIL import JpegImagePlugin

    image = _chroma_rich(skimage_photos)
    for sub, expect in (("420", 2), ("422", 1), ("444", 0)):
        payload = get_codec("jpeg", subsampling=sub).payload(
            get_codec("jpeg", subsampling=sub).encode(image, 80))
        with Image.open(io.BytesIO(payload)) as im:
            assert JpegImagePlugin.get_sampling(im) == expect


def test_bpg_fallback_444_header(tiny_image):
    codec = get_codec("bpg", chroma="444", use_bpgenc=False)
    payload = codec.payload(codec.encode(tiny_image))
    assert payload[:2] == b"H\x01"


@pytest.mark.parametrize("spelling", ["444", "4:4:4", 444])
def test_chroma_spellings(spelling):
    # -O subsampling=444 on the command line arrives as the int 444
    assert get_codec("jpeg", subsampling=spelling).subsampling == "444"
    assert get_codec("heif", chroma=spelling).chroma == "444"
    assert get_codec("bpg", chroma=spelling).chroma == "444"
    assert get_codec("avif", subsampling=spelling).subsampling == "444"


@pytest.mark.parametrize("name, options, match", [
    ("jpeg", {"subsampling": "411"}, "subsampling"),
    ("heif", {"chroma": "422"}, "chroma"),
    ("bpg", {"chroma": "bogus"}, "chroma"),
    ("avif", {"subsampling": "x"}, "subsampling"),
    ("avif", {"speed": 11}, "speed"),
    ("avif", {"speed": "fast"}, "speed"),
    ("webp", {"method": 7}, "method"),
    ("x265", {"mode": "vbr"}, "mode"),
    ("x265", {"gop": "long"}, "gop"),
    ("bpg", {"use_bpgenc": "maybe"}, "use_bpgenc"),
])
def test_bad_option_values_are_input_errors(name, options, match):
    with pytest.raises(InputError, match=match):
        get_codec(name, **options)


def test_bpg_use_bpgenc_option():
    assert get_codec("bpg", use_bpgenc="false").use_bpgenc is False
    assert get_codec("bpg", use_bpgenc=0).use_bpgenc is False
    if not HAVE_BPGENC:
        with pytest.raises(GencodecError, match="not on PATH"):
            get_codec("bpg", use_bpgenc=True)
        with pytest.raises(GencodecError, match="not on PATH"):
            get_codec("bpg", use_bpgenc="yes")


@pytest.mark.skipif(HAVE_BPGENC, reason="bpgdec is installed")
def test_real_bpg_payload_without_bpgdec_is_a_clear_error(tiny_image):
    data = container.pack("bpg", 16, 16, b"BPG\xfb" + bytes(40))
    with pytest.raises(BitstreamError, match="bpgdec is not on PATH"):
        get_codec("bpg").decode(data)


# -- the bpp search ---------------------------------------------------------------------

def _neighbour_bpp(codec, image, quality, direction):
    """bpp one quality step away (direction +1 = better quality), None past the range."""
    qr = codec.quality
    q = quality + direction * qr.step * (1 if qr.higher_is_better else -1)
    if not qr.lo <= q <= qr.hi:
        return None
    return bits_per_pixel(codec.encode(image, q), image)


def _assert_bpp_hit(codec, image, target, result):
    if abs(result.bpp - target) <= 0.05 * target:
        return
    # Coarse steps: the neighbouring settings must bracket the target, i.e. no other
    # setting gets closer than one step away.
    below = _neighbour_bpp(codec, image, result.quality, -1)
    above = _neighbour_bpp(codec, image, result.quality, +1)
    lo = below if below is not None else 0.0
    hi = above if above is not None else float("inf")
    assert lo <= target <= hi, (codec.name, target, result.quality, result.bpp, below, above)
    for other in (below, above):
        if other is not None:
            assert abs(result.bpp - target) <= abs(other - target), \
                (codec.name, target, result, below, above)


@pytest.mark.parametrize("target", [0.5, 1.0, 2.0])
def test_find_quality_for_bpp(image_codec, astronaut_crop, target):
    calls = []
    real_encode = image_codec.encode

    def counting_encode(image, quality=None):
        calls.append(quality)
        return real_encode(image, quality)

    image_codec.encode = counting_encode
    try:
        result = find_quality_for_bpp(image_codec, astronaut_crop, target)
    finally:
        del image_codec.encode
    assert isinstance(result, BppResult)
    qr = image_codec.quality
    assert qr.lo <= result.quality <= qr.hi
    # it reports the bpp it reached, and the stream that reaches it
    assert result.bpp == bits_per_pixel(result.data, astronaut_crop)
    assert image_codec.encode(astronaut_crop, result.quality) == result.data
    assert image_codec.decode(result.data).shape == astronaut_crop.shape
    # bisection, not a scan: 2 ends + log2(steps) probes
    n = int(round((qr.hi - qr.lo) / qr.step))
    assert len(calls) <= 2 + int(np.ceil(np.log2(n))) + 1, calls
    _assert_bpp_hit(image_codec, astronaut_crop, target, result)


def test_find_quality_for_bpp_outside_the_range(astronaut_crop):
    jpeg = get_codec("jpeg")
    top = find_quality_for_bpp(jpeg, astronaut_crop, 1000.0)
    assert top.quality == jpeg.quality.hi
    bottom = find_quality_for_bpp(jpeg, astronaut_crop, 1e-6)
    assert bottom.quality == jpeg.quality.lo
    bpg = get_codec("bpg")
    assert find_quality_for_bpp(bpg, astronaut_crop, 1e-6).quality == 51  # worst QP
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(InputError, match="positive"):
            find_quality_for_bpp(jpeg, astronaut_crop, bad)


# -- damaged payloads -------------------------------------------------------------------

def _check_decode_or_bitstream_error(codec, data, shape):
    try:
        out = codec.decode(data)
    except BitstreamError:
        return False
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{codec.name}: {type(exc).__name__} instead of BitstreamError: {exc}")
    # a damaged payload that still decodes (the CRC is the guard against accidents)
    # must still give an image of the promised size
    assert out.shape == shape and out.dtype == np.uint8
    return True


def test_payload_fuzz(image_codec, tiny_image):
    """Valid container, damaged payload (re-framed so the CRC matches): the decoder
    either gives a 16x16 image or raises BitstreamError; never anything else."""
    rng = np.random.default_rng(1234)
    payload = image_codec.payload(image_codec.encode(tiny_image))
    cases = [payload[:n] for n in range(0, len(payload), max(1, len(payload) // 25))]
    for _ in range(40):
        bad = bytearray(payload)
        for i in rng.integers(0, len(bad), size=int(rng.integers(1, 4))):
            bad[i] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(bad))
    cases += [b"", b"\x00" * 64, bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
              payload[: len(payload) // 2] * 2]
    rejected = sum(not _check_decode_or_bitstream_error(
        image_codec, container.pack(image_codec.name, 16, 16, c), (16, 16, 3)) for c in cases)
    assert rejected >= 5  # at least the empty and truncated ones


def test_payload_of_another_size_is_rejected(image_codec, tiny_image):
    payload = image_codec.payload(image_codec.encode(tiny_image))
    for w, h in ((100, 100), (16, 72)):  # coded sizes differ for every codec
        with pytest.raises(BitstreamError):
            image_codec.decode(container.pack(image_codec.name, w, h, payload))


def test_payload_of_another_format_is_rejected(image_codec, tiny_image):
    other = "webp" if image_codec.name != "webp" else "jpeg"
    payload = get_codec(other).payload(get_codec(other).encode(tiny_image))
    with pytest.raises(BitstreamError):
        image_codec.decode(container.pack(image_codec.name, 16, 16, payload))


def test_hevc_coded_size_checks(tiny_image):
    """Decoded HEVC pictures must cover the header's size and be no larger than the
    coded size; pictures coded at the plain multiple of 8 (streams from before the
    64x64 minimum) pass too, and either bpg instance decodes a fallback stream."""
    from gencodec.codecs_ext import _hevc

    _hevc.check_coded_size(np.zeros((16, 32, 3), np.uint8), "bpg", 32, 16)  # legacy
    _hevc.check_coded_size(np.zeros((64, 64, 3), np.uint8), "bpg", 32, 16)  # current
    for bad in ((8, 32), (72, 64), (64, 72)):
        with pytest.raises(BitstreamError, match="coded at most 64x64"):
            _hevc.check_coded_size(np.zeros((*bad, 3), np.uint8), "bpg", 32, 16)
    data = get_codec("bpg", use_bpgenc=False).encode(tiny_image)
    assert get_codec("bpg").decode(data).shape == (16, 16, 3)
    big = _hevc.encode_frames([np.zeros((128, 128, 3), np.uint8)], 128, 128,
                              pix_fmt="yuv420p", x265_params={"qp": 20, "keyint": 1},
                              colour=_hevc.FULL_RANGE_601)
    with pytest.raises(BitstreamError, match="coded at most 64x64"):
        get_codec("bpg").decode(container.pack("bpg", 8, 8, b"H\x00\x00\x00" + big))


def test_header_pixel_limit_on_decode(tiny_image, monkeypatch):
    codec = get_codec("jpeg")
    data = codec.encode(tiny_image)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100)
    with pytest.raises(BitstreamError, match="above the limit"):
        codec.decode(data)


# -- x265 video -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(half_photos) -> np.ndarray:
    """Six 45x29 frames panning across astronaut (odd size: padding is exercised)."""
    a = half_photos["astronaut"]
    frames = np.stack([a[60 + 2 * t: 89 + 2 * t, 100 + 3 * t: 145 + 3 * t] for t in range(6)])
    assert frames.shape == (6, 29, 45, 3)
    return np.ascontiguousarray(frames)


@pytest.mark.parametrize("mode, quality", [("crf", 20), ("qp", 22)])
@pytest.mark.parametrize("gop", ["intra", "normal"])
def test_x265_round_trip(clip, mode, quality, gop, psnr):
    codec = get_codec("x265", mode=mode, gop=gop, preset="ultrafast")
    data = codec.encode(clip, quality)
    out = codec.decode(data)
    assert out.shape == clip.shape and out.dtype == np.uint8  # frame count preserved
    h = container.read_header(data)
    assert (h.codec, h.width, h.height) == ("x265", 45, 29)
    assert psnr(clip, out) > 30.0
    for t in range(len(clip)):  # frames come back in order
        errs = [np.abs(out[t].astype(int) - clip[u]).mean() for u in range(len(clip))]
        assert int(np.argmin(errs)) == t
    assert bits_per_pixel(data, clip) == len(data) * 8 / (6 * 29 * 45)


def test_x265_quality_and_gop(clip, psnr):
    qp = get_codec("x265", mode="qp", preset="ultrafast")
    hi, lo = qp.encode(clip, 18), qp.encode(clip, 40)
    assert len(hi) > len(lo)
    assert psnr(clip, qp.decode(hi)) > psnr(clip, qp.decode(lo)) + 5
    # a static scene: inter coding (normal GOP) costs much less than all-intra
    still = np.repeat(clip[:1], 6, axis=0)
    intra = get_codec("x265", mode="qp", gop="intra", preset="ultrafast").encode(still, 26)
    normal = get_codec("x265", mode="qp", gop="normal", preset="ultrafast").encode(still, 26)
    assert len(normal) < 0.6 * len(intra)


def test_x265_inputs(clip):
    codec = get_codec("x265", preset="ultrafast")
    one = codec.decode(codec.encode(clip[:1]))
    assert one.shape == (1, 29, 45, 3)
    as_list = codec.decode(codec.encode(list(clip[:2])))
    assert as_list.shape == (2, 29, 45, 3)
    with pytest.raises(InputError, match="TxHxWx3"):
        codec.encode(clip[0])  # one image is not a sequence
    with pytest.raises(InputError, match="no frames"):
        codec.encode([])
    with pytest.raises(InputError, match="same size"):
        codec.encode([clip[0], clip[0][:10]])


def test_x265_payload_fuzz(clip):
    codec = get_codec("x265", preset="ultrafast", gop="intra")
    frames = np.ascontiguousarray(clip[:2, :16, :16])
    payload = codec.payload(codec.encode(frames))
    rng = np.random.default_rng(7)
    cases = [payload[:n] for n in range(0, len(payload), max(1, len(payload) // 12))]
    for _ in range(15):
        bad = bytearray(payload)
        bad[int(rng.integers(len(bad)))] ^= 1 << int(rng.integers(8))
        cases.append(bytes(bad))
    bad = bytearray(payload)
    bad[3] = 5  # claims five frames
    cases.append(bytes(bad))
    for c in cases:
        _check_decode_or_bitstream_error(codec, container.pack("x265", 16, 16, c), (2, 16, 16, 3))
    with pytest.raises(BitstreamError, match="expected 5"):
        codec.decode(container.pack("x265", 16, 16, bytes(bad)))


def test_small_pictures_are_padded_for_x265():
    """PyAV's libx265 corrupts its heap on small pictures (see codecs_ext/_hevc.py); the
    HEVC codecs code at least 64x64."""
    from gencodec.codecs_ext import _hevc

    assert _hevc.MIN_SAFE_SIZE == 64
    for codec in (get_codec("x265"), get_codec("bpg", use_bpgenc=False)):
        assert codec.padded_size(1, 1) == (64, 64)
        assert codec.padded_size(45, 29) == (64, 64)
        assert codec.padded_size(65, 200) == (72, 200)
        for w, h in ((1, 1), (45, 29), (65, 200), (64, 64)):
            assert codec.padded_size(w, h) == _hevc.coded_size(w, h)
    assert get_codec("jpeg").padded_size(45, 29) == (45, 29)
    assert get_codec("heif").padded_size(45, 29) == (45, 29)


def test_small_video_encodes_do_not_crash_the_process():
    """Several small normal-GOP encodes in one process: before the padding this aborted
    ("corrupted size vs. prev_size") nearly every time. Run in a child process so that a
    crash fails this test instead of killing the test run."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from gencodec.codecs_ext import get_codec\n"
        "clip = np.random.default_rng(0).integers(0, 255, (6, 29, 45, 3), dtype=np.uint8)\n"
        "for mode in ('crf', 'qp', 'crf'):\n"
        "    c = get_codec('x265', mode=mode)\n"
        "    assert c.decode(c.encode(clip, 20)).shape == clip.shape\n"
        "b = get_codec('bpg', use_bpgenc=False)\n"
        "for s in ((1, 1), (8, 40), (29, 8), (17, 45)):\n"
        "    assert b.decode(b.encode(clip[0, :s[0], :s[1]])).shape == (*s, 3)\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# -- adversarial settings and sizes (farm review) -----------------------------------------

def test_quality_between_steps_is_refused_not_truncated(tiny_image):
    """``-q 75.7`` used to be coded as 75 and reported as 75.7."""
    jpeg = get_codec("jpeg")
    with pytest.raises(InputError, match="quality 75.7 is not a valid setting"):
        jpeg.encode(tiny_image, 75.7)
    q = jpeg.quality.check(75.0)
    assert q == 75 and isinstance(q, int)
    assert isinstance(get_codec("bpg").quality.check(np.int64(30)), int)
    assert jpeg.encode(tiny_image, 75.0) == jpeg.encode(tiny_image, 75)
    half = QualityRange("q", 0, 1, 0.5, step=0.25)
    assert half.check(0.75) == 0.75
    with pytest.raises(InputError, match="steps of 0.25"):
        half.check(0.3)


@pytest.mark.parametrize("name, side", [("webp", 16383), ("jpeg", 65500), ("avif", 32768)])
def test_sizes_beyond_the_format_are_input_errors(name, side):
    """WebP raised a bare ValueError past 16383; AVIF wrote a stream past 32768 that
    its own decoder refuses. Both are refused before encoding, with the limit named."""
    codec = get_codec(name)
    wide = np.zeros((1, side + 1, 3), np.uint8)
    with pytest.raises(InputError, match=f"{side + 1}x1 image is too large .*at most {side}"):
        codec.encode(wide)
    with pytest.raises(InputError, match="too large"):
        codec.encode(np.ascontiguousarray(wide.transpose(1, 0, 2)))


def test_encoder_failures_are_gencodec_errors_naming_codec_and_size():
    codec = get_codec("webp")
    codec.max_coded_side = None  # let libwebp itself refuse the picture
    with pytest.raises(GencodecError, match=r"webp: the encoder failed on a 16400x2 image "
                                            r"\(quality=75\): .*16383"):
        codec.encode(np.zeros((2, 16400, 3), np.uint8))


@pytest.mark.parametrize("name", ["bpg", "x265"])
def test_unknown_x265_preset_is_refused_up_front(name):
    with pytest.raises(InputError, match="preset must be one of ultrafast"):
        get_codec(name, preset="bogus")
    assert get_codec(name, preset="veryslow").preset == "veryslow"


def test_find_quality_for_bpp_counts_header_or_payload_and_says_when_out_of_reach(
        astronaut_crop):
    jpeg = get_codec("jpeg")
    pixels = astronaut_crop.shape[0] * astronaut_crop.shape[1]
    whole = find_quality_for_bpp(jpeg, astronaut_crop, 1.0)
    bare = find_quality_for_bpp(jpeg, astronaut_crop, 1.0, header=False)
    assert whole.reachable and bare.reachable
    assert whole.bpp == len(whole.data) * 8 / pixels
    assert bare.bpp == len(jpeg.payload(bare.data)) * 8 / pixels
    assert abs(bare.bpp - 1.0) <= abs((len(bare.data) * 8 / pixels) - 1.0)
    assert bare.quality >= whole.quality  # the 64 header bytes go to the picture
    low, high = (find_quality_for_bpp(jpeg, astronaut_crop, t) for t in (1e-3, 1e3))
    assert (low.quality, low.reachable, high.quality, high.reachable) == (1, False, 100, False)
    for bad in (float("inf"), float("-inf")):
        with pytest.raises(InputError, match="positive number"):
            find_quality_for_bpp(jpeg, astronaut_crop, bad)


def test_payload_is_standard_says_whether_other_tools_open_it():
    assert all(get_codec(n).payload_is_standard for n in ("jpeg", "webp", "heif", "avif"))
    assert get_codec("bpg", use_bpgenc=False).payload_is_standard is False
    if HAVE_BPGENC:
        assert get_codec("bpg", use_bpgenc=True).payload_is_standard is True


def test_empty_and_foreign_payloads_are_named_not_python_objects(image_codec):
    """An empty JPEG payload printed "cannot identify image file <_io.BytesIO object at
    0x...>"; PyAV's errors came with "[Errno 1094995529] ...: '<none>'"."""
    for payload, expected in ((b"", "payload is empty"), (b"x" * 40, "")):
        with pytest.raises(BitstreamError) as e:
            image_codec.decode(container.pack(image_codec.name, 8, 8, payload))
        text = str(e.value)
        assert expected in text and text.startswith(f"{image_codec.name}: ")
        for leak in ("BytesIO", " at 0x", "[Errno", "<none>"):
            assert leak not in text, text


def test_undecodable_hevc_is_named_without_errno():
    with pytest.raises(BitstreamError) as e:
        get_codec("x265").decode(container.pack("x265", 8, 8, bytes(4) + b"x" * 40))
    assert "HEVC stream does not decode: Invalid data" in str(e.value)
    assert "[Errno" not in str(e.value) and "<none>" not in str(e.value)
