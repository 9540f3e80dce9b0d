"""Reverse-channel coding (RCC) of diagonal Gaussians with the Poisson functional
representation (PFR): the engine of DiffC.

To send a sample of ``q = N(mu_q, sigma_q^2)`` to a receiver that knows only
``p = N(mu_p, sigma_p^2)`` and a shared seed, the encoder draws ``K = 2^k`` candidates
``z_j = mu_p + sigma_p * n_j`` from ``p`` with shared randomness and sends the index

    j* = argmin_j  log T_j - log w_j,     log w_j = log q(z_j) - log p(z_j),

where ``T_j`` are the arrival times of a unit-rate Poisson process (Theis & Ahmed 2022;
Algorithm 4 of Vonderfecht & Liu, ICLR 2025, here with a fixed budget of ``K``
candidates). With ``a = sigma_p/sigma_q`` and ``b = (mu_p - mu_q)/sigma_q`` per dimension,

    log w_j = 1/2 sum_i n_ji (A_i n_ji + B_i) + const,   A = 1 - a^2,  B = -2 a b,

the terms ``-b_i^2``, the same for every candidate, dropped: they would dominate the sum
and its rounding when ``q`` is far from ``p``. The receiver regenerates ``z_j*`` from the
index alone. ``z_j*`` follows ``q`` exactly when ``K`` is unbounded; with ``K = 2^k`` it
is approximate: log N spreads about ``sqrt(2 KL)`` nats around KL for Gaussian mean
shifts, so a chunk whose KL is close to ``k`` bits is sometimes cut short (the DiffC
paper's practice; ``padding_bits`` sets the margin).

A diffusion step carries far more than ``k`` bits, so :func:`encode_step` splits its
dimensions into chunks of about equal KL: ``n = max(1, ceil(KL / (k - padding_bits)))``
chunks, made of a seeded permutation of the (C-order flattened) dimensions cut into
``n`` nearly equal parts (the first ``D mod n`` chunks one dimension longer). The
receiver knows ``n`` from the number of indices; nothing else is sent. One native call
codes every chunk of a step (permutation, chunk bounds, scores, argmins and the
sample's scatter in C++, chunks or candidates across OpenMP threads; on a GPU one
launch over chunks x candidates); :func:`encode_step_per_chunk` is the same code with
one native call per chunk, the reference the tests and benchmarks check it against.

Shared randomness and the bitstream format (PFR format ``FORMAT_VERSION``) are defined
in ``native/rcc/philox.hpp``: Philox4x32-7 keyed by ``(seed, step, chunk)`` through
splitmix64; each normal is one of 2^14 equally likely values,
``Phi^-1((h + 1/2) / 2^14)`` for 14 bits ``h`` of a 16-bit half of a Philox word;
candidate ``j`` draws its ``d`` normals from its own row of counters
(:func:`candidate_normals`). Golden vectors in the tests pin it. Format 1
(Philox4x32-10 and Box-Muller normals) is no longer coded.

Arithmetic: inputs (float32 or float64) are read as float64; the per-dimension
coefficients ``A = (sigma_q - sigma_p)(sigma_q + sigma_p)/sigma_q^2`` and
``B = 2 sigma_p (mu_q - mu_p)/sigma_q^2`` are formed in float64 and rounded to float32,
candidates are scored in float32 terms ``n (A n + B)`` summed four at a time in float32
and then in float64, and the sample ``mu_p + sigma_p * n`` is
formed in float64 and rounded to float32. The CPU (OpenMP, AVX-512/AVX2/portable
kernels) and CUDA coders perform the same operations in the same order, so they pick
the same index; the decoder reproduces the encoder's sample bit for bit. Inputs whose
samples or candidate scores would overflow float32 (|values| above ~2e37, or q so
much narrower than p that one dimension carries hundreds of bits) are refused with an
:class:`~gencodec.errors.InputError` instead of coding garbage.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from gencodec import _native
from gencodec.errors import InputError

__all__ = [
    "DEFAULT_PADDING_BITS",
    "FORMAT_VERSION",
    "MAX_CHUNK_BITS",
    "MIN_CHUNK_BITS",
    "StepCode",
    "candidate_normals",
    "chunk_bounds",
    "cpu_kernel",
    "decode_step",
    "decode_step_per_chunk",
    "encode_step",
    "encode_step_per_chunk",
    "gaussian_kl_bits",
    "n_chunks_for",
    "permutation",
    "pfr_decode_chunk",
    "pfr_encode_chunk",
    "philox_normals",
    "rcc_key",
]

MIN_CHUNK_BITS = _native.RCC_MIN_CHUNK_BITS  # 1
MAX_CHUNK_BITS = _native.RCC_MAX_CHUNK_BITS  # 24: 2^24 candidates, 128 MiB of arrival times
DEFAULT_PADDING_BITS = 2.0
#: The version of the PFR stream format (native/rcc/philox.hpp): what a DiffC payload
#: written by this library needs to be decoded.
FORMAT_VERSION = _native.RCC_FORMAT_VERSION  # 2
#: Inputs are refused beyond this magnitude, so that a sample mu_p + sigma_p * n
#: (|n| < 7) fits in float32.
_MAX_VALUE = float(np.finfo(np.float32).max) / 16
#: A bound on |normal| (the quantile table's largest is Phi^-1(1 - 2^-15) = 4.009).
_MAX_NORMAL = 7.0
#: Candidate j's normals start at counter j << _CANDIDATE_SHIFT (its own row of blocks).
_CANDIDATE_SHIFT = _native.RCC_CANDIDATE_SHIFT  # 35
_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class StepCode:
    """The code of one step: one index of ``chunk_bits`` bits per chunk."""

    indices: np.ndarray  # uint32, shape (n_chunks,), each in [0, 2**chunk_bits)
    chunk_bits: int  # k

    def __post_init__(self) -> None:
        k = _chunk_bits(self.chunk_bits)
        raw = np.asarray(self.indices)
        if raw.ndim != 1 or raw.size == 0:
            raise InputError(
                f"StepCode indices must be a non-empty 1-D array, got shape {raw.shape}"
            )
        if not np.issubdtype(raw.dtype, np.integer):
            raise InputError(f"StepCode indices must be integers, got dtype {raw.dtype}")
        if raw.min() < 0 or raw.max() >= 2**k:
            raise InputError(
                f"StepCode indices must lie in [0, 2**{k}), got min {raw.min()} and max {raw.max()}"
            )
        indices = raw.astype(np.uint32)
        indices.flags.writeable = False
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "chunk_bits", k)

    @property
    def n_chunks(self) -> int:
        return int(self.indices.shape[0])

    def bits(self) -> int:
        return self.n_chunks * self.chunk_bits

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepCode):
            return NotImplemented
        return self.chunk_bits == other.chunk_bits and np.array_equal(self.indices, other.indices)

    def __hash__(self) -> int:
        return hash((self.chunk_bits, self.indices.tobytes()))


# --- validation -------------------------------------------------------------------


def _uint64(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if not 0 <= v < 2**64:
        raise InputError(f"{name} must be in [0, 2**64), got {v}")
    return v


def _chunk_bits(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"chunk_bits must be an integer, got {value!r}")
    k = int(value)
    if not MIN_CHUNK_BITS <= k <= MAX_CHUNK_BITS:
        raise InputError(f"chunk_bits must be in [{MIN_CHUNK_BITS}, {MAX_CHUNK_BITS}], got {k}")
    return k


def _device(device: object) -> str:
    """'cpu' or 'cuda' ('cuda:0' and torch.device objects are accepted too; the CUDA
    coder runs on the current device)."""
    name = str(device)
    if name == "cuda:0":
        name = "cuda"
    if name not in _DEVICES:
        raise InputError(f"device must be one of {_DEVICES} (or 'cuda:0'), got {device!r}")
    if name == "cuda":
        info = _native.build_info()
        if not info["cuda_compiled"] or info["cuda_devices"] == 0:
            raise InputError(f"device='cuda' but no CUDA device is usable: {info['cuda_error']}")
    return name


def _numeric_array(x: object, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} is not an array of numbers: {exc}") from None
    if (
        not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer))
        or a.dtype == bool
    ):
        raise InputError(f"{name} must be a real float array, got dtype {a.dtype}")
    return a


def _real_array(x: object, name: str) -> np.ndarray:
    a = _numeric_array(x, name).astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        first = int(np.flatnonzero(bad.ravel())[0])
        raise InputError(
            f"{name} has {int(bad.sum())} non-finite values (first at flat index {first}: "
            f"{a.ravel()[first]})"
        )
    big = np.abs(a) > _MAX_VALUE
    if big.any():
        first = int(np.flatnonzero(big.ravel())[0])
        raise InputError(
            f"{name} has values too large for float32 samples (first at flat index {first}: "
            f"{a.ravel()[first]:g}; at most {_MAX_VALUE:.3g}); rescale the inputs"
        )
    return a


def _sigma(x: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    s = _real_array(x, name)
    try:
        s = np.broadcast_to(s, shape)
    except ValueError:
        raise InputError(
            f"{name} of shape {s.shape} does not broadcast to the mean's shape {shape}"
        ) from None
    if not (s > 0).all():
        first = int(np.flatnonzero(~(s > 0).ravel())[0])
        raise InputError(f"{name} must be > 0, got {s.ravel()[first]} at flat index {first}")
    return np.ascontiguousarray(s, dtype=np.float64).ravel()


def _gaussians(mu_q, sigma_q, mu_p, sigma_p):
    """Validated, flattened float64 (mu_q, s_q, mu_p, s_p) and the original shape."""
    mq = _real_array(mu_q, "mu_q")
    mp = _real_array(mu_p, "mu_p")
    if mq.shape != mp.shape:
        raise InputError(f"mu_q has shape {mq.shape} but mu_p has shape {mp.shape}")
    if mq.size == 0:
        raise InputError("mu_q and mu_p are empty (need at least 1 dimension)")
    sq = _sigma(sigma_q, "sigma_q", mq.shape)
    sp = _sigma(sigma_p, "sigma_p", mq.shape)
    return np.ascontiguousarray(mq).ravel(), sq, np.ascontiguousarray(mp).ravel(), sp, mq.shape


def _check_scoring_range(mq, sq, mp, sp) -> None:
    """Refuse q so far from p that a candidate's float32 score terms ``n (A n + B)``,
    ``A = 1 - a^2``, ``B = -2 a b`` (four summed in float32) could overflow: every
    candidate would then score alike and PFR would silently return index 0. Such a
    dimension carries hundreds of bits, far beyond the 2^24 candidates of a chunk."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        a, b = sp / sq, np.abs(mp - mq) / sq
        bound = 4.0 * _MAX_NORMAL * (np.abs(1.0 - a * a) * _MAX_NORMAL + 2.0 * a * b)
    bad = ~(bound <= float(np.finfo(np.float32).max))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"q is too far from p to score PFR candidates in float32 at flat index {i} "
            f"(sigma_p/sigma_q = {a[i]:.3g}, |mu_p - mu_q|/sigma_q = {b[i]:.3g}): that "
            "dimension alone carries far more bits than 2^24 candidates can send; check "
            "sigma_q and the means"
        )


def _prior(mu_p, sigma_p):
    mp = _real_array(mu_p, "mu_p")
    if mp.size == 0:
        raise InputError("mu_p is empty (need at least 1 dimension)")
    return np.ascontiguousarray(mp).ravel(), _sigma(sigma_p, "sigma_p", mp.shape), mp.shape


def _flat(x: object, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A 1-D contiguous float32 or float64 view (or copy) of an input, broadcast to
    ``shape`` when given; its values are checked by the native call."""
    a = _numeric_array(x, name)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    if shape is not None and a.shape != shape:
        try:
            a = np.broadcast_to(a, shape)
        except ValueError:
            raise InputError(
                f"{name} of shape {a.shape} does not broadcast to the mean's shape {shape}"
            ) from None
    return np.ascontiguousarray(a).ravel()


def _step_gaussians(mu_q, sigma_q, mu_p, sigma_p):
    """Flattened float32/float64 (mu_q, s_q, mu_p, s_p) and the shape, for the native
    whole-step calls (they check the values)."""
    mq, mp = _numeric_array(mu_q, "mu_q"), _numeric_array(mu_p, "mu_p")
    if mq.shape != mp.shape:
        raise InputError(f"mu_q has shape {mq.shape} but mu_p has shape {mp.shape}")
    if mq.size == 0:
        raise InputError("mu_q and mu_p are empty (need at least 1 dimension)")
    shape = mq.shape
    flat = (_flat(mq, "mu_q"), _flat(sigma_q, "sigma_q", shape), _flat(mp, "mu_p"))
    return *flat, _flat(sigma_p, "sigma_p", shape), shape


def _native_checked(call, diagnose):
    """``call()``; when the native layer refuses the values (ValueError), ``diagnose()``
    runs the numpy checks, which raise the InputError that names the problem."""
    try:
        return call()
    except ValueError as exc:
        diagnose()
        raise InputError(str(exc)) from None


# --- chunking ---------------------------------------------------------------------


def _kl_bits_per_dim(mq, sq, mp, sp) -> np.ndarray:
    """KL(q || p) per dimension in bits: (r^2 - 1 - 2 log r + d^2) / (2 log 2) with
    r = sigma_q / sigma_p and d = (mu_q - mu_p) / sigma_p."""
    x = (sq - sp) / sp  # sigma ratio minus one, without cancellation near 1
    d = (mq - mp) / sp
    # log r: log1p(x) near r = 1, the difference of logs where r itself would underflow
    log_r = np.where(x > -0.5, np.log1p(np.maximum(x, -0.5)), np.log(sq) - np.log(sp))
    return (0.5 * (x * (2.0 + x) - 2.0 * log_r) + 0.5 * d * d) / math.log(2.0)


def gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p) -> float:
    """Total KL(q || p) in bits for diagonal Gaussians; sigmas are scalars or arrays
    broadcastable to the means' shape. The per-dimension terms are those of
    :func:`_kl_bits_per_dim`, summed natively in a fixed order (one value whatever the
    thread count)."""
    mq, sq, mp, sp, _ = _step_gaussians(mu_q, sigma_q, mu_p, sigma_p)
    return _native_checked(
        lambda: _native.rcc_kl_bits(mq, sq, mp, sp),
        lambda: _gaussians(mu_q, sigma_q, mu_p, sigma_p),
    )


def n_chunks_for(
    kl_bits: float, chunk_bits: int, padding_bits: float = DEFAULT_PADDING_BITS
) -> int:
    """Chunks for a step of ``kl_bits``: ``max(1, ceil(kl_bits / (chunk_bits - padding_bits)))``."""
    k = _chunk_bits(chunk_bits)
    try:
        pad = float(padding_bits)
    except (TypeError, ValueError):
        raise InputError(f"padding_bits must be a number, got {padding_bits!r}") from None
    if not (math.isfinite(pad) and 0.0 <= pad < k):
        raise InputError(f"padding_bits must be in [0, chunk_bits={k}), got {padding_bits}")
    if not (math.isfinite(kl_bits) and kl_bits >= 0.0):
        raise InputError(f"KL must be finite and >= 0, got {kl_bits} bits")
    return max(1, math.ceil(kl_bits / (k - pad)))


def chunk_bounds(n_dims: int, n_chunks: int) -> np.ndarray:
    """Start offsets (length ``n_chunks + 1``) of ``n_chunks`` nearly equal parts of
    ``n_dims`` permuted dimensions; raises when a chunk would get no dimension."""
    if n_chunks < 1 or n_chunks > n_dims:
        raise InputError(
            f"cannot split {n_dims} dimensions into {n_chunks} chunks: every chunk needs at least "
            "1 dimension"
        )
    sizes = np.full(n_chunks, n_dims // n_chunks, dtype=np.int64)
    sizes[: n_dims % n_chunks] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def permutation(n: int, seed: int, step: int) -> np.ndarray:
    """The seeded Fisher-Yates permutation of ``range(n)`` used to form chunks (int64)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise InputError(f"permutation size must be an integer >= 0, got {n!r}")
    return _native.rcc_permutation(int(n), _uint64(seed, "seed"), _uint64(step, "step"))


# --- randomness and single chunks -------------------------------------------------


def rcc_key(seed: int, step: int, chunk: int) -> int:
    """The 64-bit Philox key of ``(seed, step, chunk)`` (see ``native/rcc/philox.hpp``)."""
    return _native.rcc_key(_uint64(seed, "seed"), _uint64(step, "step"), _uint64(chunk, "chunk"))


def philox_normals(
    seed: int, step: int, chunk: int, start: int, count: int, device: str = "cpu"
) -> np.ndarray:
    """The shared standard normals at counters ``start ... start+count-1`` (float32)."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise InputError(f"count must be an integer >= 0, got {count!r}")
    if _uint64(start, "start") + int(count) > 2**64:
        raise InputError(f"counters start={start} ... start+count-1 pass 2**64 - 1")
    return _native.rcc_normals(
        _uint64(seed, "seed"),
        _uint64(step, "step"),
        _uint64(chunk, "chunk"),
        _uint64(start, "start"),
        int(count),
        _device(device),
    )


def candidate_normals(
    seed: int, step: int, chunk: int, index: int, d: int, device: str = "cpu"
) -> np.ndarray:
    """The ``d`` standard normals of candidate ``index`` of chunk ``(seed, step, chunk)``:
    its sample is ``mu_p + sigma_p * n`` (float32)."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not (
        0 <= index < 2**MAX_CHUNK_BITS
    ):
        raise InputError(f"index must be an integer in [0, 2**{MAX_CHUNK_BITS}), got {index!r}")
    return philox_normals(seed, step, chunk, int(index) << _CANDIDATE_SHIFT, d, device)


def cpu_kernel() -> str:
    """The CPU scoring kernel in use (``avx512``, ``avx2`` or ``generic``)."""
    return _native.rcc_cpu_kernel()


def pfr_encode_chunk(
    mu_q,
    sigma_q,
    mu_p,
    sigma_p,
    *,
    seed: int,
    step: int,
    chunk: int,
    chunk_bits: int,
    device: str = "cpu",
) -> tuple[int, np.ndarray]:
    """PFR-encode one chunk (all its dimensions, flattened): ``(index, sample)``."""
    mq, sq, mp, sp, shape = _gaussians(mu_q, sigma_q, mu_p, sigma_p)
    _check_scoring_range(mq, sq, mp, sp)
    index, z = _native.rcc_encode_chunk(
        mq,
        sq,
        mp,
        sp,
        _uint64(seed, "seed"),
        _uint64(step, "step"),
        _uint64(chunk, "chunk"),
        _chunk_bits(chunk_bits),
        _device(device),
    )
    return int(index), z.reshape(shape)


def pfr_decode_chunk(
    mu_p,
    sigma_p,
    index: int,
    *,
    seed: int,
    step: int,
    chunk: int,
    chunk_bits: int,
    device: str = "cpu",
) -> np.ndarray:
    """The sample of candidate ``index`` of one chunk (float32, ``mu_p``'s shape)."""
    mp, sp, shape = _prior(mu_p, sigma_p)
    k = _chunk_bits(chunk_bits)
    idx = _uint64(index, "index")
    if idx >= 2**k:
        raise InputError(f"index {idx} does not fit in chunk_bits={k}")
    z = _native.rcc_decode_chunk(
        mp,
        sp,
        idx,
        _uint64(seed, "seed"),
        _uint64(step, "step"),
        _uint64(chunk, "chunk"),
        k,
        _device(device),
    )
    return z.reshape(shape)


# --- whole steps ------------------------------------------------------------------


def _step_chunks(kl_bits, n_dims, k, padding_bits, n_chunks, step) -> int:
    """The chunk count of a step: adaptive from ``kl_bits()`` or the fixed ``n_chunks``."""
    if n_chunks is None:
        kl = kl_bits()
        n = n_chunks_for(kl, k, padding_bits)
        need = f"KL of {kl:.1f} bits needs {n} chunks of at most {k} - {padding_bits} bits"
    else:
        if isinstance(n_chunks, bool) or not isinstance(n_chunks, numbers.Integral):
            raise InputError(f"step {step}: n_chunks must be an integer, got {n_chunks!r}")
        n = int(n_chunks)
        if n < 1:
            raise InputError(f"step {step}: n_chunks must be >= 1, got {n_chunks}")
        need = f"a fixed budget of {n} chunks"
    if n > n_dims:
        raise InputError(
            f"step {step}: {need}, but there are only {n_dims} dimensions (a chunk would "
            "get none); raise chunk_bits or send less information per step"
        )
    return n


def encode_step(
    mu_q,
    sigma_q,
    mu_p,
    sigma_p,
    *,
    seed: int,
    step: int,
    chunk_bits: int = 16,
    padding_bits: float = DEFAULT_PADDING_BITS,
    device: str = "cpu",
    n_chunks: int | None = None,
) -> tuple[StepCode, np.ndarray]:
    """Send a sample of q using p: returns the code and the sample (float32, ``mu_q``'s
    shape), which is exactly what :func:`decode_step` returns for that code.

    The chunk count is adaptive by default (:func:`n_chunks_for` of this step's D_KL);
    ``n_chunks`` fixes it instead (a fixed per-step budget, the DiffC paper's "mean"
    schedule), in which case a step whose D_KL exceeds its budget is sent with a
    coarser sample (PFR with fewer candidates than the KL asks for).

    One native call codes every chunk; the values are checked there, in the same pass
    (a refusal is diagnosed by the numpy checks of :func:`encode_step_per_chunk`)."""
    mq, sq, mp, sp, shape = _step_gaussians(mu_q, sigma_q, mu_p, sigma_p)
    seed, step = _uint64(seed, "seed"), _uint64(step, "step")
    k, device = _chunk_bits(chunk_bits), _device(device)

    def diagnose():
        _check_scoring_range(*_gaussians(mu_q, sigma_q, mu_p, sigma_p)[:4])

    def kl_bits():
        return _native_checked(lambda: _native.rcc_kl_bits(mq, sq, mp, sp, True), diagnose)

    n = _step_chunks(kl_bits, mq.size, k, padding_bits, n_chunks, step)
    indices, sample = _native_checked(
        lambda: _native.rcc_encode_step(mq, sq, mp, sp, seed, step, k, n, device), diagnose
    )
    return StepCode(indices, k), sample.reshape(shape)


def decode_step(
    mu_p, sigma_p, code: StepCode, *, seed: int, step: int, device: str = "cpu"
) -> np.ndarray:
    """Receive a step: the sample (float32, ``mu_p``'s shape) from p, the seed, the step
    and the chunk indices. The work is one normal per dimension, done on the CPU for
    either device (the CUDA coder draws the same normals)."""
    if not isinstance(code, StepCode):
        raise InputError(f"code must be a StepCode, got {type(code).__name__}")
    mp = _numeric_array(mu_p, "mu_p")
    if mp.size == 0:
        raise InputError("mu_p is empty (need at least 1 dimension)")
    shape = mp.shape
    mp, sp = _flat(mp, "mu_p"), _flat(sigma_p, "sigma_p", shape)
    seed, step, device = _uint64(seed, "seed"), _uint64(step, "step"), _device(device)
    chunk_bounds(mp.size, code.n_chunks)  # refuses more chunks than dimensions
    sample = _native_checked(
        lambda: _native.rcc_decode_step(
            mp, sp, code.indices, seed, step, code.chunk_bits, device
        ),
        lambda: _prior(mu_p, sigma_p),
    )
    return sample.reshape(shape)


def encode_step_per_chunk(
    mu_q,
    sigma_q,
    mu_p,
    sigma_p,
    *,
    seed: int,
    step: int,
    chunk_bits: int = 16,
    padding_bits: float = DEFAULT_PADDING_BITS,
    device: str = "cpu",
    n_chunks: int | None = None,
) -> tuple[StepCode, np.ndarray]:
    """:func:`encode_step` with the checks in numpy, the chunking in Python and one
    native call per chunk: the same code, bit for bit (the reference of the tests and
    of benchmarks/diffc.py)."""
    mq, sq, mp, sp, shape = _gaussians(mu_q, sigma_q, mu_p, sigma_p)
    _check_scoring_range(mq, sq, mp, sp)
    seed, step = _uint64(seed, "seed"), _uint64(step, "step")
    k, device = _chunk_bits(chunk_bits), _device(device)
    n = _step_chunks(
        lambda: float(_kl_bits_per_dim(mq, sq, mp, sp).sum()),
        mq.size,
        k,
        padding_bits,
        n_chunks,
        step,
    )
    perm = _native.rcc_permutation(mq.size, seed, step)
    bounds = chunk_bounds(mq.size, n)
    indices = np.empty(n, dtype=np.uint32)
    sample = np.empty(mq.size, dtype=np.float32)
    for c in range(n):
        dims = perm[bounds[c] : bounds[c + 1]]
        indices[c], sample[dims] = _native.rcc_encode_chunk(
            mq[dims], sq[dims], mp[dims], sp[dims], seed, step, c, k, device
        )
    return StepCode(indices, k), sample.reshape(shape)


def decode_step_per_chunk(
    mu_p, sigma_p, code: StepCode, *, seed: int, step: int, device: str = "cpu"
) -> np.ndarray:
    """:func:`decode_step` with one native call per chunk (the reference)."""
    if not isinstance(code, StepCode):
        raise InputError(f"code must be a StepCode, got {type(code).__name__}")
    mp, sp, shape = _prior(mu_p, sigma_p)
    seed, step, device = _uint64(seed, "seed"), _uint64(step, "step"), _device(device)
    perm = _native.rcc_permutation(mp.size, seed, step)
    bounds = chunk_bounds(mp.size, code.n_chunks)
    sample = np.empty(mp.size, dtype=np.float32)
    for c in range(code.n_chunks):
        dims = perm[bounds[c] : bounds[c + 1]]
        sample[dims] = _native.rcc_decode_chunk(
            mp[dims], sp[dims], int(code.indices[c]), seed, step, c, code.chunk_bits, device
        )
    return sample.reshape(shape)
