"""Entropy models of the latent codec and their coding with constriction.

* :class:`EntropyBottleneck`: the factorized density of the hyper latent z (Balle et al.
  2018, as CompressAI's ``EntropyBottleneck``: a per-channel monotone MLP gives the CDF;
  ``quantiles`` are learned by the auxiliary loss and bound the coded range). Its
  quantized CDF tables are buffers in CompressAI's layout (``_quantized_cdf``,
  ``_offset``, ``_cdf_length``), so encoder and decoder read the same integers.
* :class:`GaussianConditional`: y given (mean, scale), with the scale rounded up to a
  fixed ``scale_table`` (64 levels, 0.11 ... 256, as the public OSDiff model) before
  coding, so that the coded distribution depends on a table index only.

CompressAI itself is not a dependency: its wheels require numpy < 2, torchvision and
torch-geometric (import-time, through its registry), none of which this project can
take on a CPU-only torch install; the few pieces needed are here, with the same state
dict names so that CompressAI-trained weights load.

Coding (:class:`SymbolCoder`): one constriction ANS stack holds the z symbols (each
channel a categorical from its quantized CDF) and then the y residuals
``round(y - mean)`` under ``QuantizedGaussian(0, table[index])``. ANS decodes in reverse
order of encoding, so the encoder gathers everything first and writes it backwards.
A fixed 32-bit end marker (:data:`END_MARKER`, two uniform 16-bit symbols) is encoded
first and so decoded last: constriction's decoder does not fail when it runs out of
words (it goes on reading zeros), so a stream that lost a word would otherwise decode
silently to another image; :meth:`SymbolDecoder.finish` checks the marker and that no
word is left over.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gencodec.errors import BitstreamError

#: Residuals are clamped to +-RESIDUAL_LIMIT before coding (16 sigma of the widest
#: scale; the coder spends about 2^-24 of probability on each symbol of the range).
RESIDUAL_LIMIT = 4096
#: Precision of the quantized CDF tables of the hyper latent (CompressAI's).
CDF_PRECISION = 16
SCALE_BOUND = 0.11
LIKELIHOOD_BOUND = 1e-9
#: Coded first and decoded last; a decoder that reads anything else lost sync.
END_MARKER = 0x05D1FFE0
_MARKER_HALVES = np.array([END_MARKER >> 16, END_MARKER & 0xFFFF], np.int32)


def scale_table(lo: float = 0.11, hi: float = 256.0, levels: int = 64) -> torch.Tensor:
    """Log-spaced scales (the public model's ``get_scale_table``)."""
    return torch.exp(torch.linspace(math.log(lo), math.log(hi), levels))


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it pushes x up past the bound."""

    @staticmethod
    def forward(ctx, x, bound: float):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x >= ctx.bound) | (grad < 0)).to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def quantize(x: torch.Tensor, mode: str, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``noise`` (training proxy: + U(-1/2, 1/2)), ``ste`` (round around ``offset`` with a
    straight-through gradient) or ``round`` (round around ``offset``)."""
    if mode == "noise":
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    if mode == "ste":
        return round_ste(x - offset) + offset
    if mode == "round":
        return torch.round(x - offset) + offset
    raise ValueError(f"unknown quantization mode {mode!r}")


def pmf_to_quantized_cdf(pmf: np.ndarray, precision: int = CDF_PRECISION) -> np.ndarray:
    """An integer CDF of ``len(pmf) + 1`` entries from 0 to 2^precision in which every
    symbol keeps a frequency of at least 1 (the rest goes by probability)."""
    total = 1 << precision
    p = np.maximum(np.asarray(pmf, np.float64), 0.0)
    n = len(p)
    freq = 1 + np.floor(p / max(p.sum(), 1e-300) * (total - n)).astype(np.int64)
    freq[int(np.argmax(freq))] += total - int(freq.sum())
    return np.concatenate([[0], np.cumsum(freq)]).astype(np.int32)


class EntropyBottleneck(nn.Module):
    """Factorized prior of z (CompressAI's layout: ``_matrix{i}``, ``_bias{i}``,
    ``_factor{i}``, ``quantiles`` and the integer tables)."""

    def __init__(self, channels: int, tail_mass: float = 1e-9, init_scale: float = 10.0,
                 filters: tuple[int, ...] = (3, 3, 3, 3)):
        super().__init__()
        self.channels, self.filters, self.tail_mass = int(channels), tuple(filters), tail_mass
        dims = (1,) + self.filters + (1,)
        scale = init_scale ** (1 / (len(self.filters) + 1))
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.register_parameter(f"_matrix{i}", nn.Parameter(
                torch.full((channels, dims[i + 1], dims[i]), init)))
            self.register_parameter(f"_bias{i}", nn.Parameter(
                torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(self.filters):
                self.register_parameter(f"_factor{i}", nn.Parameter(
                    torch.zeros(channels, dims[i + 1], 1)))
        self.quantiles = nn.Parameter(
            torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        target = math.log(2 / tail_mass - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]))
        self.register_buffer("_offset", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_quantized_cdf", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_cdf_length", torch.zeros(0, dtype=torch.int32))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the tables' sizes depend on the learned quantiles: take the stored ones
        for name in ("_offset", "_quantized_cdf", "_cdf_length"):
            if prefix + name in state_dict:
                getattr(self, name).resize_(state_dict[prefix + name].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def medians(self) -> torch.Tensor:
        """The per-channel medians, shaped (C,)."""
        return self.quantiles[:, 0, 1]

    def _logits_cumulative(self, x: torch.Tensor, stop_gradient: bool) -> torch.Tensor:
        for i in range(len(self.filters) + 1):
            matrix, bias = getattr(self, f"_matrix{i}"), getattr(self, f"_bias{i}")
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.filters):
                factor = getattr(self, f"_factor{i}")
                x = x + torch.tanh(factor.detach() if stop_gradient else factor) * torch.tanh(x)
        return x

    def _likelihood(self, values: torch.Tensor, stop_gradient: bool = False):
        """P(v - 1/2 < Z < v + 1/2) for values shaped (C, 1, n). In the upper tail the
        difference is taken on the mirrored logits (CompressAI's sign trick:
        sigmoid(-l) - sigmoid(-u) equals sigmoid(u) - sigmoid(l), and there both terms
        are small, so float32 does not cancel them to 0)."""
        lower = self._logits_cumulative(values - 0.5, stop_gradient)
        upper = self._logits_cumulative(values + 0.5, stop_gradient)
        # -sign(l + u), but +1 where l + u == 0 (torch.sign's 0 would zero the bin)
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(lower.dtype).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik, lower, upper

    def forward(self, z: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(z with noise (training) or rounded around the medians, its likelihood)."""
        c = z.shape[1]
        values = z.transpose(0, 1).reshape(c, 1, -1)
        medians = self.medians().detach().view(c, 1, 1)
        values = quantize(values, "noise" if training else "round", medians)
        lik = lower_bound(self._likelihood(values)[0], LIKELIHOOD_BOUND)
        shape = (c, z.shape[0], *z.shape[2:])
        return (values.reshape(shape).transpose(0, 1),
                lik.reshape(shape).transpose(0, 1))

    def loss(self) -> torch.Tensor:
        """The auxiliary loss: the quantiles meet the tail-mass targets."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    @torch.no_grad()
    def update(self) -> None:
        """Rebuild the integer tables from the density and the quantiles."""
        medians = self.medians()
        minima = torch.clamp(torch.ceil(medians - self.quantiles[:, 0, 0]).int(), min=0)
        maxima = torch.clamp(torch.ceil(self.quantiles[:, 0, 2] - medians).int(), min=0)
        pmf_length = (maxima + minima + 1)
        max_length = int(pmf_length.max())
        samples = torch.arange(max_length, device=medians.device)[None, :] \
            + (medians - minima)[:, None]
        pmf, lower, upper = self._likelihood(samples[:, None, :].to(medians.dtype),
                                             stop_gradient=True)
        tail = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        pmf, tail = pmf[:, 0, :].double().cpu().numpy(), tail[:, 0].double().cpu().numpy()
        cdf = np.zeros((self.channels, max_length + 2), np.int32)
        for c, n in enumerate(pmf_length.tolist()):
            cdf[c, :n + 2] = pmf_to_quantized_cdf(np.append(pmf[c, :n], tail[c]))
        device = self.quantiles.device
        self._offset = (-minima).to(device)
        self._quantized_cdf = torch.from_numpy(cdf).to(device)
        self._cdf_length = (pmf_length + 2).to(device)

    def has_tables(self) -> bool:
        return self._offset.numel() == self.channels

    def categoricals(self):
        """One constriction categorical model per channel (from the integer tables)."""
        import constriction

        if not self.has_tables():
            raise RuntimeError("entropy tables are missing: call update_entropy_tables()")
        cdf, length = self._quantized_cdf.cpu().numpy(), self._cdf_length.cpu().numpy()
        return [constriction.stream.model.Categorical(
            np.diff(cdf[c, :length[c]]).astype(np.float64) / (1 << CDF_PRECISION),
            perfect=False) for c in range(self.channels)]

    def symbols(self, z: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Table indices of rounded z (clamped to the coded range; shape (C, n) for a
        batch of one) and the z_hat they stand for."""
        medians = self.medians().view(1, -1, 1, 1)
        q = torch.round(z - medians)
        lo = self._offset.view(1, -1, 1, 1)
        hi = (self._cdf_length - 3).view(1, -1, 1, 1) + lo
        q = torch.maximum(torch.minimum(q, hi.to(q.dtype)), lo.to(q.dtype))
        idx = (q - lo).to(torch.int32)[0].reshape(self.channels, -1)
        return idx.cpu().numpy(), q + medians

    def dequantize(self, idx: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """z_hat from table indices (C, n) -> (1, C, h, w)."""
        q = torch.from_numpy(idx).to(self.quantiles.device, self.quantiles.dtype).view(1, *shape)
        return q + self._offset.view(1, -1, 1, 1).float() + self.medians().view(1, -1, 1, 1)


class GaussianConditional(nn.Module):
    """y ~ N(mean, scale) integrated over unit bins; scales bounded below by 0.11 and, for
    coding, rounded up to ``scale_table``."""

    def __init__(self, table: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("scale_table", scale_table() if table is None else table)
        self.register_buffer("scale_bound", torch.tensor([SCALE_BOUND]))

    def likelihood(self, values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """P(bin of ``values``) for residuals ``values = y_tilde - mean``."""
        scales = lower_bound(scales, SCALE_BOUND)
        v = torch.abs(values)
        upper = 0.5 * torch.erfc(-(0.5 - v) / scales / math.sqrt(2))
        lower = 0.5 * torch.erfc(-(-0.5 - v) / scales / math.sqrt(2))
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """The smallest table entry at or above each scale (the last for larger ones)."""
        scales = scales.clamp_min(SCALE_BOUND).contiguous()
        table = self.scale_table.to(scales.dtype)
        return torch.searchsorted(table, scales).clamp_max(len(table) - 1)

    def stds(self, indexes: torch.Tensor) -> np.ndarray:
        return self.scale_table.double().cpu().numpy()[indexes.cpu().numpy()]


class SymbolCoder:
    """The symbols of one image for one constriction ANS stack, in decoding order:
    first the hyper latent z (per channel), then groups of y residuals."""

    def __init__(self):
        self.z: tuple[np.ndarray, list] | None = None
        self.groups: list[tuple[np.ndarray, np.ndarray]] = []

    def add_z(self, idx: np.ndarray, models: list) -> None:
        self.z = (idx, models)

    def add_residuals(self, residuals: torch.Tensor, stds: np.ndarray) -> None:
        self.groups.append((residuals.to(torch.int32).cpu().numpy().ravel(), stds.ravel()))

    def encode(self) -> np.ndarray:
        """The compressed words (uint32)."""
        import constriction

        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(_MARKER_HALVES, _marker_model())
        family = constriction.stream.model.QuantizedGaussian(-RESIDUAL_LIMIT, RESIDUAL_LIMIT)
        for symbols, stds in reversed(self.groups):
            if symbols.size:
                coder.encode_reverse(symbols, family, np.zeros_like(stds), stds)
        idx, models = self.z
        for c in reversed(range(idx.shape[0])):
            coder.encode_reverse(np.ascontiguousarray(idx[c]), models[c])
        return coder.get_compressed()


class SymbolDecoder:
    """Reads back what :meth:`SymbolCoder.encode` wrote, in the same order."""

    def __init__(self, words: np.ndarray):
        import constriction

        self.coder = constriction.stream.stack.AnsCoder(words)
        self.family = constriction.stream.model.QuantizedGaussian(-RESIDUAL_LIMIT,
                                                                  RESIDUAL_LIMIT)

    def z(self, models: list, count: int) -> np.ndarray:
        return np.stack([self.coder.decode(m, count) for m in models]) if models \
            else np.zeros((0, count), np.int32)

    def residuals(self, stds: np.ndarray) -> np.ndarray:
        if stds.size == 0:
            return np.zeros(0, np.int32)
        return self.coder.decode(self.family, np.zeros_like(stds.ravel()), stds.ravel())

    def finish(self) -> None:
        """The end marker must come next and then no word may be left: anything else
        means a damaged or forged stream (missing, extra or altered words)."""
        if not np.array_equal(self.coder.decode(_marker_model(), 2), _MARKER_HALVES):
            raise BitstreamError("the entropy-coded data does not end with its end marker "
                                 "(damaged stream: missing or altered words)")
        if not self.coder.is_empty():
            raise BitstreamError("the entropy-coded data does not end where the image does "
                                 "(damaged stream)")


def _marker_model():
    """The model of the end marker's two 16-bit halves."""
    import constriction

    return constriction.stream.model.Uniform(1 << 16)
