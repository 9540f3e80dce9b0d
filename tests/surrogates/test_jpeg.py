"""diff-JPEG against Pillow's JPEG (libjpeg-turbo): tables, reconstruction, symbol
counts, rate, gradients and bad input."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from gencodec.codecs_ext import get_codec
from gencodec.codecs_ext.surrogates import get_surrogate
from gencodec.codecs_ext.surrogates.jpeg import JpegSurrogate, ijg_tables
from gencodec.codecs_ext.surrogates.jpeg_rate import (AC_SIZES, AC_SYMBOLS, DC_SIZES,
                                                      DC_SYMBOLS, JpegRateModel, _ac_counts,
                                                      _dc_counts, _RunSizePairs,
                                                      huffman_code_lengths, size_membership)
from gencodec.errors import InputError


def _tensor(image: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].to(dtype) / 255


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return np.round(x[0].detach().permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exact():
    return JpegSurrogate(rounding="exact")


@pytest.fixture(scope="module")
def fourier():
    return JpegSurrogate()


def test_registered():
    assert isinstance(get_surrogate("jpeg"), JpegSurrogate)
    with pytest.raises(InputError, match="no differentiable surrogate"):
        get_surrogate("png")


def test_ijg_tables_equal_libjpeg_for_every_quality():
    """The tables Pillow writes (natural order) for qualities 1..100."""
    image = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    qualities = torch.arange(1, 101, dtype=torch.float64)
    luma, chroma = ijg_tables(qualities)
    for q in range(1, 101):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=q)
        tables = Image.open(buf).quantization
        assert luma[q - 1].tolist() == list(tables[0]), q
        assert chroma[q - 1].tolist() == list(tables[1]), q


def test_table_gradient_is_the_continuous_ijg_formula():
    q = torch.tensor([1.0, 10.0, 30.0, 75.0], dtype=torch.float64, requires_grad=True)
    luma, _ = ijg_tables(q)
    luma[:, 0].sum().backward()  # basic entry 16
    expected = [0.0, -16 * 50 / 10**2, -16 * 50 / 30**2, -16 * 2 / 100]  # 255-clamped at q=1
    assert q.grad.tolist() == pytest.approx(expected)


@pytest.mark.parametrize("quality", [10, 50, 90])
def test_exact_rounding_matches_pillow_decode(exact, astronaut_crop, skimage_photos, psnr, quality):
    """With exact rounding, the reconstruction is Pillow's decode up to libjpeg's integer
    DCTs (islow) vs exact ones: measured on these crops, mean |diff| 0.04-0.34 levels and
    PSNR(surrogate, Pillow) above 44 dB; an odd size (edge padding, chroma at its true
    size) as well."""
    codec = get_codec("jpeg")
    odd = np.ascontiguousarray(skimage_photos["coffee"][100:175, 300:361])  # 75 x 61
    for image in (astronaut_crop, odd):
        decoded = codec.decode(codec.encode(image, quality))
        with torch.no_grad():
            x_hat, _ = exact(_tensor(image), quality)
        ours = _to_uint8(x_hat)
        assert ours.shape == image.shape
        diff = np.abs(ours.astype(int) - decoded)
        assert diff.mean() < 0.45, diff.mean()
        assert psnr(decoded, ours) > 42.0
        # the reconstruction error itself is the codec's
        assert abs(psnr(image, ours) - psnr(image, decoded)) < 0.15


def test_fourier_rounding_psnr_close_to_real(fourier, astronaut_crop, psnr):
    codec = get_codec("jpeg")
    for quality in (20, 90):
        decoded = codec.decode(codec.encode(astronaut_crop, quality))
        with torch.no_grad():
            x_hat, _ = fourier(_tensor(astronaut_crop), quality)
        assert abs(psnr(astronaut_crop, _to_uint8(x_hat)) - psnr(astronaut_crop, decoded)) < 1.0


def _reference_symbols(blocks: np.ndarray):
    """JPEG's symbols of integer zigzag blocks (B x 64, coding order), counted the way
    libjpeg's encode_one_block emits them: DC size categories, AC (run, size), ZRL, EOB,
    and the magnitude bits."""
    dc, ac, bits, prev = Counter(), Counter(), 0, 0
    for b in blocks.astype(int).tolist():
        size = abs(b[0] - prev).bit_length()
        dc[size] += 1
        bits += size
        prev, run = b[0], 0
        for c in b[1:]:
            if c == 0:
                run += 1
                continue
            while run >= 16:
                ac["zrl"] += 1
                run -= 16
            ac[(run, abs(c).bit_length())] += 1
            bits += abs(c).bit_length()
            run = 0
        if run:
            ac["eob"] += 1
    return dc, ac, bits


def test_symbol_counts_equal_libjpeg_symbols():
    rng = np.random.default_rng(3)
    # sparse Laplacian coefficients, decaying along the zigzag, with long zero runs
    scale = 60.0 * np.exp(-np.arange(64) / rng.uniform(2, 20, (300, 1)))
    blocks = np.round(rng.laplace(size=(300, 64)) * scale * (rng.random((300, 64)) < 0.35))
    blocks[:, 0] = rng.integers(-1000, 1000, 300)
    blocks[5, 1:] = 0  # an empty block
    blocks[6, 1:] = 0
    blocks[6, 63] = 3  # a nonzero last coefficient after 61 zeros: 3 ZRL, no EOB
    # the rate reads unrounded coefficients: add sub-half noise
    y = torch.from_numpy(blocks + rng.uniform(-0.45, 0.45, blocks.shape))[None]
    dc_counts, dc_bits = _dc_counts(y[..., 0])
    ac_counts, ac_bits = _ac_counts(y[..., 1:])
    dc, ac, bits = _reference_symbols(blocks)
    assert dc_counts[0].tolist() == [dc[s] for s in range(DC_SIZES)]
    expected_ac = ([ac[(r, s)] for r in range(16) for s in range(1, AC_SIZES)]
                   + [ac["zrl"], ac["eob"]])
    assert ac_counts[0].tolist() == expected_ac
    assert float(dc_bits + ac_bits) == bits


def _dense_run_size_pairs(memb: torch.Tensor):
    """The multilinear extension written out densely (O(63^2) per block): P(coefficient
    k ends a run of r zeros) = prod_{j=k-r}^{k-1} zero_j * nonzero_{k-r-1}."""
    zero = memb[..., 0]
    nonzero = 1 - zero
    n, _, k = zero.shape
    pos = torch.arange(k)
    back = pos[:, None] - 1 - pos[None, :]  # [k, i] -> k - 1 - i
    valid = back >= 0
    before = torch.where(valid, zero[..., back.clamp(min=0)], torch.ones_like(zero[..., :1, None]))
    zeros_before = torch.nn.functional.pad(torch.cumprod(before, -1)[..., :-1], (1, 0), value=1.0)
    boundary = torch.where(valid, nonzero[..., back.clamp(min=0)], (back == -1).to(zero.dtype))
    run = zeros_before * boundary  # N x B x k x r
    pairs = torch.einsum("nbkr,nbks->nrs", run, memb[..., 1:])
    zrl = torch.einsum("nbkr,nbk,r->n", run, nonzero, (pos // 16).to(zero.dtype))
    pairs = torch.nn.functional.pad(pairs, (0, 0, 0, 1)).reshape(n, 4, 16, -1).sum(1)
    return pairs, zrl


def test_run_size_pairs_gradient_equals_the_dense_multilinear_extension():
    rng = np.random.default_rng(5)
    y = rng.laplace(size=(2, 40, 63)) * 3 * (rng.random((2, 40, 63)) < 0.3)
    y[0, 3] = 0  # an empty block
    y[1, 4, :-1] = 0  # one nonzero at the very end: ZRL symbols
    y[1, 4, -1] = 2
    y = torch.from_numpy(y)
    memb = size_membership(y, torch.round(y), AC_SIZES).detach().requires_grad_()
    g_pairs = torch.from_numpy(rng.normal(size=(2, 16, AC_SIZES - 1)))
    g_zrl = torch.from_numpy(rng.normal(size=2))
    fast, dense = _RunSizePairs.apply(memb), _dense_run_size_pairs(memb)
    for a, b in zip(fast, dense):
        assert torch.allclose(a, b)
    grad_fast = torch.autograd.grad(fast, memb, (g_pairs, g_zrl))[0]
    grad_dense = torch.autograd.grad(dense, memb, (g_pairs, g_zrl))[0]
    assert torch.allclose(grad_fast, grad_dense, atol=1e-10)


def _pillow_huffman_tables(jpeg: bytes) -> dict[int, dict[int, int]]:
    """{table class << 4 | id: {symbol byte: code length}} from a file's DHT segments."""
    tables, i = {}, 2
    while jpeg[i + 1] != 0xDA:
        length = int.from_bytes(jpeg[i + 2:i + 4], "big")
        seg, j = jpeg[i + 4:i + 2 + length], 0
        while jpeg[i + 1] == 0xC4 and j < len(seg):
            counts = seg[j + 1:j + 17]
            values = iter(seg[j + 17:j + 17 + sum(counts)])
            tables[seg[j]] = {next(values): n for n, c in enumerate(counts, 1) for _ in range(c)}
            j += 17 + sum(counts)
        i += 2 + length
    return tables


@pytest.mark.parametrize("quality", [5, 10, 30])
def test_huffman_tables_equal_the_optimised_ones_pillow_writes(exact, skimage_photos, quality):
    """Counting the surrogate's symbols and building libjpeg's optimal tables from them
    gives the very tables in Pillow's file (where the integer DCT does not change a
    count: measured on this crop at these qualities)."""
    image = np.ascontiguousarray(skimage_photos["chelsea"][:128, :128])
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, optimize=True)
    with torch.no_grad():
        _, (luma, cb, cr) = exact.analyse(_tensor(image), quality)
    ours = {}
    for table_id, components in ((0, (luma,)), (1, (cb, cr))):
        dc = sum(_dc_counts(y[..., 0])[0] for y in components)
        ac = sum(_ac_counts(y[..., 1:])[0] for y in components)
        for cls, counts, symbols in ((0, dc, DC_SYMBOLS), (1, ac, AC_SYMBOLS)):
            lengths = huffman_code_lengths(counts[0].round().long().numpy(), symbols)
            ours[cls << 4 | table_id] = {s: int(n) for s, n in zip(symbols, lengths) if n}
    assert ours == _pillow_huffman_tables(buf.getvalue())


def test_huffman_code_lengths_limited_to_16_bits():
    # Fibonacci counts make an unlimited Huffman code 25 bits deep
    fib = [1, 1]
    while len(fib) < 26:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib[::-1])
    lengths = huffman_code_lengths(counts, range(len(counts)))
    assert lengths.max() == 16 and lengths.min() >= 1
    assert np.sum(2.0 ** -lengths) < 1  # prefix-free, with the all-ones code left out
    assert np.all(np.diff(lengths) >= 0)  # rarer symbols never get shorter codes
    # one symbol still gets a 1-bit code; unused symbols none
    assert huffman_code_lengths([0, 7, 0], range(3)).tolist() == [0, 1, 0]


def test_bits_match_real_files_and_grow_with_quality(fourier, skimage_photos):
    """The calibrated rate against the project's JPEG files on photos the rate model was
    not fitted on; and both grow with quality."""
    codec = get_codec("jpeg")
    qualities = [10, 30, 50, 70, 90]
    for name, crop in (("chelsea", (slice(40, 168), slice(150, 278))),
                       ("rocket", (slice(200, 328), slice(300, 428)))):
        image = np.ascontiguousarray(skimage_photos[name][crop])
        with torch.no_grad():
            _, bits = fourier(_tensor(image).expand(len(qualities), -1, -1, -1),
                              torch.tensor(qualities, dtype=torch.float32))
        real = np.array([8 * len(codec.payload(codec.encode(image, q))) for q in qualities])
        assert np.all(np.diff(bits.numpy()) > 0) and np.all(np.diff(real) > 0)
        assert np.abs(np.log2(bits.numpy() / real)).max() < 0.1, (bits.numpy(), real)


@pytest.mark.parametrize("rounding", ["fourier", "exact"])
def test_gradients_flow_to_x_and_quality(astronaut_crop, rounding):
    surrogate = JpegSurrogate(rounding=rounding)
    x = _tensor(astronaut_crop[:48, :40], torch.float64).repeat(2, 1, 1, 1).requires_grad_()
    q = torch.tensor([35.0, 80.0], dtype=torch.float64, requires_grad=True)
    x_hat, bits = surrogate(x, q)
    assert x_hat.dtype == bits.dtype == torch.float64 and bits.shape == (2,)
    (bits.sum() / 1000 + (x_hat - x).square().sum()).backward()
    for g in (x.grad, q.grad):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    # the rate alone: more quality, more bits, for each image
    q.grad = None
    surrogate(x, q)[1].sum().backward()
    assert (q.grad > 0).all()


@pytest.mark.parametrize("h, w", [(1, 1), (17, 33), (8, 200)])
def test_any_size_is_padded_and_cropped(fourier, h, w):
    x = torch.rand(2, 3, h, w)
    x_hat, bits = fourier(x, 50)
    assert x_hat.shape == x.shape and 0 <= float(x_hat.min()) and float(x_hat.max()) <= 1
    assert torch.isfinite(bits).all() and (bits > 8 * 277).all()


@pytest.mark.parametrize("x, quality, match", [
    (torch.rand(3, 8, 8), 50, "N x 3 x H x W"),
    (torch.rand(1, 1, 8, 8), 50, "N x 3 x H x W"),
    (torch.rand(0, 3, 8, 8), 50, "N x 3 x H x W"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 50, "float tensor"),
    (np.zeros((1, 3, 8, 8), np.float32), 50, "float tensor"),
    (torch.full((1, 3, 8, 8), float("nan")), 50, "non-finite"),
    (torch.full((1, 3, 8, 8), float("inf")), 50, "non-finite"),
    (torch.rand(1, 3, 8, 8), 0, "1..100"),
    (torch.rand(1, 3, 8, 8), 100.5, "1..100"),
    (torch.rand(1, 3, 8, 8), float("nan"), "1..100"),
    (torch.rand(2, 3, 8, 8), torch.tensor([50.0, 60.0, 70.0]), "3 values for a batch of 2"),
])
def test_bad_input_is_a_clear_error(fourier, x, quality, match):
    with pytest.raises(InputError, match=match):
        fourier(x, quality)


def test_bad_options_and_weights(tmp_path):
    with pytest.raises(InputError, match="rounding"):
        JpegSurrogate(rounding="floor")
    with pytest.raises(InputError, match="terms"):
        JpegSurrogate(terms=0)
    with pytest.raises(InputError, match="3 weights"):
        JpegRateModel([1.0, 2.0])
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"weights": torch.tensor([1.0, 1.0, 0.0])}, str(good))
    assert JpegSurrogate(rate_model=good).rate.weights.tolist() == [1.0, 1.0, 0.0]
    bad = tmp_path / "rate.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a JPEG rate model"):
        JpegRateModel.load(bad)


def test_values_outside_unit_range_are_clipped_as_8_bit_conversion_does(fourier):
    x = (torch.rand(1, 3, 16, 24) - 0.5) * 3 + 0.5
    with torch.no_grad():
        a, b = fourier(x, 50), fourier(x.clamp(0, 1), 50)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.cuda
def test_cuda_equals_cpu(astronaut_crop):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    surrogate = JpegSurrogate()
    x = _tensor(astronaut_crop[:64, :80]).repeat(2, 1, 1, 1)
    q = torch.tensor([30.0, 70.0])
    cpu = surrogate(x, q)
    xg, qg = x.cuda().requires_grad_(), q.cuda().requires_grad_()
    gpu = surrogate.cuda()(xg, qg)
    (gpu[1].sum() + gpu[0].sum()).backward()
    assert torch.isfinite(xg.grad).all() and torch.isfinite(qg.grad).all()
    # GPU and CPU arithmetic differ in the last bits: a pixel may round the other way
    assert (gpu[0].cpu() - cpu[0]).abs().mean() < 1e-3
    assert torch.allclose(gpu[1].cpu(), cpu[1], rtol=1e-3)
