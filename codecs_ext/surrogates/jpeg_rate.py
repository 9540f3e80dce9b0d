"""The rate of diff-JPEG: the size of a baseline JPEG file with optimised Huffman tables
(Pillow's ``optimize=True``, as :class:`gencodec.codecs_ext.jpeg.JpegCodec` writes it),
estimated from the quantised DCT coefficients, differentiably.

libjpeg codes each block as a DC difference (Huffman symbol = its size category
``s = bit_length(|diff|)``, then ``s`` magnitude bits) and AC (run, size) symbols in
zigzag order (a ZRL symbol per 16 zeros before a nonzero, an EOB after the last
nonzero unless it is coefficient 63), each followed by ``size`` magnitude bits. With
optimised tables each of the four tables (luma/chroma x DC/AC) is the Huffman code of
the image's own symbol counts, built by ``jpeg_gen_optimal_table`` (one code point
reserved, lengths limited to 16 bits): :func:`huffman_code_lengths` repeats it. So the
estimate counts the symbols the way the encoder does and takes

    bits = 8 (277 + distinct symbols)                  # markers and Huffman tables
         + w_0 sum_s n_s L_s + w_1 magnitude bits + w_2

where 277 bytes are SOI, JFIF APP0, two DQT, SOF0, four DHT headers, SOS, EOI, each
used symbol adds one byte to its DHT, ``n_s`` and ``L_s`` are the counts and Huffman
code lengths; ``w_0, w_1`` (near 1) absorb the 0x00 stuffed after each 0xFF byte of the
scan and the slightly larger coefficients of libjpeg's integer DCT, ``w_2`` the final
byte padding. ``w`` is fitted on photos against Pillow's files
(``scripts/fit_jpeg_rate.py``, shipped as model ``djpeg-rate``; its card gives the
figures). With ``w = (1, 1, 0)`` the estimate is the scan libjpeg would write for the
surrogate's coefficients, unstuffed.

Differentiability: the symbol counts are those of the rounded coefficients (values
exact, as the encoder counts them); their gradient is that of the same counts with
each symbol's membership interpolated linearly between the integers around the
unrounded coefficient ``y`` (straight-through). So moving ``|y|`` from 0.3 towards 0
lowers the expected number of nonzeros. The code lengths are constants of each forward
pass, so the gradient w.r.t. a count is that symbol's code length (an unused symbol
is costed one bit more than the longest code). Runs are products of the zero
memberships of the coefficients between two nonzeros (:class:`_RunSizePairs`).
"""

from __future__ import annotations

import heapq
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gencodec.errors import InputError

#: Zigzag position -> natural (row-major) index in an 8x8 block (libjpeg's
#: jpeg_natural_order).
ZIGZAG = (0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48,
          41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15,
          23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63)

#: Bytes of a Pillow baseline JPEG outside the scan data and the DHT symbol lists: SOI 2,
#: APP0 (JFIF) 18, 2 x DQT 69, SOF0 (3 components) 19, 4 x DHT 21, SOS 14, EOI 2.
FIXED_HEADER_BYTES = 277
AC_SIZES, DC_SIZES = 11, 12  # size categories 0..10 (AC), 0..11 (DC)
FEATURES = ("huffman_bits", "magnitude_bits", "one")
#: Uncalibrated weights: the scan's bits without stuffing and padding.
IDENTITY_WEIGHTS = (1.0, 1.0, 0.0)
#: libjpeg's symbol byte of each count: DC size; AC (run << 4) | size, ZRL 0xF0, EOB 0x00.
DC_SYMBOLS = tuple(range(DC_SIZES))
AC_SYMBOLS = tuple((r << 4) | s for r in range(16) for s in range(1, AC_SIZES)) + (0xF0, 0x00)
MAX_CODE_LENGTH = 16


def _size_onehot(magnitude: torch.Tensor, n_sizes: int) -> torch.Tensor:
    """One-hot size category ``bit_length(m)`` of integer-valued magnitudes."""
    size = torch.frexp(magnitude)[1].clamp(0, n_sizes - 1)
    categories = torch.arange(n_sizes, dtype=size.dtype, device=size.device)
    return (size.unsqueeze(-1) == categories).to(magnitude.dtype)


def _interpolated(a: torch.Tensor, n_sizes: int) -> torch.Tensor:
    """Size membership of a magnitude ``a >= 0``, linear between the integers around it."""
    a = a.clamp(max=2.0 ** (n_sizes - 1) - 1)
    m = torch.floor(a).detach()
    t = (a - m).unsqueeze(-1)
    return (1 - t) * _size_onehot(m, n_sizes) + t * _size_onehot(m + 1, n_sizes)


def size_membership(continuous: torch.Tensor, rounded: torch.Tensor, n_sizes: int):
    """``... x n_sizes``: the one-hot size category of ``|rounded|`` (an integer value),
    with the gradient of the interpolated membership of ``|continuous|``."""
    exact = _size_onehot(rounded.detach().abs().clamp(max=2.0 ** (n_sizes - 1) - 1), n_sizes)
    if not (torch.is_grad_enabled() and continuous.requires_grad):
        return exact
    soft = _interpolated(continuous.abs(), n_sizes)
    return soft + (exact - soft).detach()


def _dc_counts(y_dc: torch.Tensor):
    """DC symbol counts (``N x 12``) and magnitude bits (``N``) of the DC coefficients
    ``N x B`` (unrounded, coding order), coded as differences from the previous block."""
    prev = F.pad(y_dc[:, :-1], (1, 0))
    memb = size_membership(y_dc - prev, torch.round(y_dc) - torch.round(prev), DC_SIZES)
    sizes = torch.arange(DC_SIZES, dtype=y_dc.dtype, device=y_dc.device)
    return memb.sum(1), (memb * sizes).sum((1, 2))


class _RunSizePairs(torch.autograd.Function):
    """Counts of the AC (run mod 16, size) symbols (``N x 16 x 10``) and of ZRL symbols
    (``N``) of blocks given as one-hot size memberships ``N x B x 63 x 11`` (size 0: a
    zero coefficient).

    Their value is the encoder's count. Their gradient is that of the multilinear
    extension in the memberships: the probability that coefficient k ends a run of r
    zeros is ``prod_{j=k-r}^{k-1} zero_j * nonzero_{k-r-1}`` (the DC before position 0
    counts as nonzero), a pair is counted with ``P(run = r) * membership(k, size)``, and
    each run of r adds ``r // 16`` ZRL. At one-hot memberships that gradient needs only
    each coefficient's nearest nonzero neighbours, so forward and backward are O(63)
    per block (the dense form is O(63^2), tests/surrogates/test_jpeg.py checks them
    equal)."""

    @staticmethod
    def forward(ctx, memb):
        size = memb.argmax(-1)
        nonzero = size > 0
        n, b, k = size.shape
        pos = torch.arange(k, device=memb.device)
        last = torch.where(nonzero, pos, -1).cummax(-1).values
        prev = F.pad(last[..., :-1], (1, 0), value=-1)  # last nonzero before k; -1: the DC
        first = torch.where(nonzero, pos, k).flip(-1).cummin(-1).values.flip(-1)
        after = F.pad(first[..., 1:], (0, 1), value=k)  # first nonzero after k; k: none
        run = pos - prev - 1
        symbol = (run % 16) * (AC_SIZES - 1) + (size - 1).clamp(min=0)
        pairs = memb.new_zeros(n, 16 * (AC_SIZES - 1))
        pairs.scatter_add_(1, symbol.flatten(1), nonzero.flatten(1).to(memb.dtype))
        zrl = ((run // 16) * nonzero).sum((1, 2)).to(memb.dtype)
        ctx.save_for_backward(size, prev, after, run)
        return pairs.view(n, 16, AC_SIZES - 1), zrl

    @staticmethod
    def backward(ctx, g_pairs, g_zrl):
        size, prev, after, run = ctx.saved_tensors
        n, b, k = size.shape
        g_flat = g_pairs.reshape(n, -1)
        g_zrl = g_zrl.view(n, 1, 1)

        def pair_grad(r, s):  # dL/dP[run = r] of a coefficient of size s >= 1
            idx = (r % 16) * (AC_SIZES - 1) + (s - 1).clamp(min=0)
            return g_flat.gather(1, idx.flatten(1)).view(idx.shape)

        grad = g_pairs.new_zeros(n, b, k, AC_SIZES)
        every_size = torch.arange(1, AC_SIZES, device=size.device)
        grad[..., 1:] = pair_grad(run[..., None].expand(-1, -1, -1, AC_SIZES - 1),
                                  every_size.expand(n, b, k, -1))
        # nonzero_k = 1 - zero_k ends a run of run_k: its ZRL symbols
        grad[..., 0] = -g_zrl * (run // 16)
        # zero_j changes the run of the next nonzero m: from m - j - 1 (j nonzero, the
        # run's boundary) to m - prev_j - 1 (j zero, the run reaches back past j)
        pos = torch.arange(k, device=size.device)
        m = after.clamp(max=k - 1)
        s_m = size.gather(-1, m)
        longer, shorter = m - prev - 1, m - pos - 1
        change = (pair_grad(longer, s_m) + g_zrl * (longer // 16)
                  - pair_grad(shorter, s_m) - g_zrl * (shorter // 16))
        grad[..., 0] += torch.where(after < k, change, 0.0)
        return grad


def _ac_counts(y_ac: torch.Tensor):
    """AC symbol counts ``N x 162`` ((run, size) for run 0..15 and size 1..10, then ZRL
    and EOB) and magnitude bits ``N`` of ``N x B x 63`` unrounded AC coefficients in
    zigzag order."""
    memb = size_membership(y_ac, torch.round(y_ac), AC_SIZES)  # N x B x 63 x 11
    pairs, zrl = _RunSizePairs.apply(memb)
    eob = memb[..., -1, 0].sum(1)  # the last coefficient is zero
    sizes = torch.arange(AC_SIZES, dtype=y_ac.dtype, device=y_ac.device)
    counts = torch.cat([pairs.flatten(1), zrl[:, None], eob[:, None]], 1)
    return counts, (memb * sizes).sum((1, 2, 3))


def huffman_code_lengths(counts, symbols) -> np.ndarray:
    """Code length of each symbol (0 if unused) in the optimal table libjpeg builds from
    ``counts`` (``jchuff.c`` ``jpeg_gen_optimal_table``): Huffman's algorithm with a
    reserved pseudo-symbol of count 1 (no code is all ones), ties broken towards the
    larger symbol byte, lengths limited to 16 bits by libjpeg's adjustment, then
    assigned in order of (length, symbol byte)."""
    counts = np.asarray(counts, dtype=np.int64)
    order = list(symbols) + [256]  # the pseudo-symbol
    heap = [(int(c), -order[i], i) for i, c in enumerate(counts) if c > 0]
    heap.append((1, -256, len(counts)))
    heapq.heapify(heap)
    members = {node: [node] for _, _, node in heap}
    size = np.zeros(len(counts) + 1, dtype=np.int64)
    while len(heap) > 1:
        f1, key, c1 = heapq.heappop(heap)
        f2, _, c2 = heapq.heappop(heap)
        members[c1] += members.pop(c2)
        size[members[c1]] += 1
        heapq.heappush(heap, (f1 + f2, key, c1))
    bits = np.bincount(size[size > 0], minlength=33)
    for i in range(32, MAX_CODE_LENGTH, -1):  # libjpeg's length limiting
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = MAX_CODE_LENGTH
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # drop the pseudo-symbol's code
    used = sorted((int(size[k]), order[k], k) for k in range(len(counts)) if counts[k] > 0)
    lengths = np.zeros(len(counts), dtype=np.int64)
    lengths[[k for _, _, k in used]] = np.repeat(np.arange(33), bits)[:len(used)]
    return lengths


def _huffman_bits(counts: torch.Tensor, symbols) -> torch.Tensor:
    """``sum_s n_s L_s`` per row of ``counts`` (``N x S``), ``L`` the optimal code
    lengths of that row's integer counts, held constant; an unused symbol is costed
    one bit more than the longest code (its gradient)."""
    rows = torch.round(counts.detach()).to("cpu", torch.int64).numpy()
    lengths = torch.from_numpy(np.stack([huffman_code_lengths(r, symbols) for r in rows]))
    lengths = lengths.to(counts.device, counts.dtype)
    unused = lengths.max(-1, keepdim=True).values + 1
    return (counts * torch.where(lengths > 0, lengths, unused)).sum(-1)


class JpegRateModel(nn.Module):
    """Bits of Pillow's optimised JPEG file from diff-JPEG's unrounded quantised
    coefficients (module docstring for the model). ``weights``: the calibration
    weights of :data:`FEATURES`; default: uncalibrated."""

    def __init__(self, weights=IDENTITY_WEIGHTS):
        super().__init__()
        w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        if w.numel() != len(FEATURES):
            raise InputError(f"a JPEG rate model has {len(FEATURES)} weights, got {w.numel()}")
        self.register_buffer("weights", w)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "JpegRateModel":
        """The calibrated model in ``path`` (a safetensors file with ``weights``), or the
        shipped ``djpeg-rate`` model (its sha256 checked) when ``path`` is None."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if path is None:
            from gencodec.models import MODELS, model_path

            path = model_path("djpeg-rate").parent / MODELS["djpeg-rate"]["weights"]
        try:
            return cls(load_file(str(path))["weights"])
        except (OSError, KeyError, RuntimeError, SafetensorError) as exc:
            raise InputError(f"{path}: not a JPEG rate model ({exc})") from None

    def features(self, y_luma: torch.Tensor, y_cb: torch.Tensor, y_cr: torch.Tensor):
        """``N x 3`` features (:data:`FEATURES`) and ``N`` header bits (exact) from the
        unrounded quantised coefficients ``N x B x 64`` (zigzag order; luma blocks in
        the scan's MCU order, chroma in raster order)."""
        tables, magnitude = [], 0
        for components in ((y_luma,), (y_cb, y_cr)):  # Cb and Cr share the chroma tables
            dc, ac = 0, 0
            for y in components:  # ... but each has its own DC predictor
                dc_counts, dc_bits = _dc_counts(y[..., 0])
                ac_counts, ac_bits = _ac_counts(y[..., 1:])
                dc, ac, magnitude = dc + dc_counts, ac + ac_counts, magnitude + dc_bits + ac_bits
            tables += [(dc, DC_SYMBOLS), (ac, AC_SYMBOLS)]
        huffman = sum(_huffman_bits(counts, symbols) for counts, symbols in tables)
        feats = torch.stack([huffman, magnitude, torch.ones_like(huffman)], -1)
        distinct = sum(counts.clamp(max=1.0).sum(-1) for counts, _ in tables)
        return feats, 8.0 * (FIXED_HEADER_BYTES + distinct)

    def forward(self, y_luma: torch.Tensor, y_cb: torch.Tensor, y_cr: torch.Tensor):
        """Estimated bits per image (``N``)."""
        feats, header = self.features(y_luma, y_cb, y_cr)
        return header + feats @ self.weights.to(feats.dtype)
