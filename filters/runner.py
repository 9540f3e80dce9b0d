"""Tiled, batched inference of a frame model on frames of any size.

The frame is padded (edge replication) to the model's multiple and cut into square
tiles of ``tile`` pixels that overlap by ``overlap`` pixels; tiles from all the frames
of a call go through the back end in batches of ``batch``. Each tile's output is
weighted by a feathered window and the weighted outputs are summed and normalised.

The window of a tile edge that borders another tile is, at distance ``d`` from that
edge (``m = overlap // 4``, ``b = overlap - 2m``)::

    w(d) = 0                       for d < m       (the tile's own border: context only)
           (d + 1/2 - m) / b       for m <= d < m + b  (linear cross-fade)
           1                       beyond

Two neighbours' ramps add up to one across an overlap of exactly ``overlap`` (the last
tile of a row or column may overlap more; the normalisation by the summed weights
covers that), and every pixel gets a positive total weight, so the normalisation never
divides by zero. For a local model
(``receptive_field`` <= m), a pixel only takes outputs computed with all of its
context, so the tiled result equals whole-frame inference up to float rounding; that
is what the automatic overlap (4 x the receptive field) guarantees, on tiles of at least
twice that; on smaller tiles the automatic overlap is half the tile, and seams are
cross-faded rather than absent. Models with global operations get a 128-pixel overlap
(at most half the tile) and the cross-fade hides the residual seams.

Tile origins are multiples of the model's multiple, so strided networks see the same
pixel grid as on the whole frame. The output is deterministic: no noise is drawn.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from gencodec.errors import InputError

#: Default tile of models with global operations (attention, a VAE): bounds memory.
DEFAULT_TILE = 512
#: Default tile of local models (a receptive field): frames up to this side go through
#: whole, which saves the overlap's recomputation and the cross-fade (about 2x faster
#: for the compact model at 720p); their activations are small at this size.
DEFAULT_LOCAL_TILE = 2048
DEFAULT_GLOBAL_OVERLAP = 128


def _round_up(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Origins of tiles of ``tile`` covering ``[0, length)`` with at least ``overlap``
    pixels shared by neighbours; the last tile ends at ``length``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def feather(size: int, start: int, length: int, overlap: int) -> torch.Tensor:
    """1-D window of a tile at ``start`` (see the module docstring)."""
    w = torch.ones(size, dtype=torch.float32)
    if overlap <= 0:
        return w
    margin = overlap // 4
    blend = max(overlap - 2 * margin, 1)
    d = torch.arange(size, dtype=torch.float32) + 0.5
    ramp = ((d - margin) / blend).clamp(0.0, 1.0)
    if start > 0:
        w = torch.minimum(w, ramp)
    if start + size < length:
        w = torch.minimum(w, ramp.flip(0))
    return w


class FrameRunner:
    """Run a back end (:mod:`gencodec.filters.backends`) on frames of any size.

    ``tile``: tile side in pixels (rounded up to the model multiple); frames that fit
    are processed whole; None: :data:`DEFAULT_LOCAL_TILE` for local models,
    :data:`DEFAULT_TILE` for models with global operations. ``overlap``: pixels shared by neighbouring tiles (None: 4 x the
    receptive field for local models, 128 otherwise, at most half the tile). ``batch``: tiles per model call;
    ``tile`` and ``batch`` bound the memory one call takes."""

    def __init__(self, backend, tile: int | None = None, overlap: int | None = None,
                 batch: int = 4):
        self.backend = backend
        m = int(backend.multiple)
        self.multiple = m
        if tile is None:
            tile = DEFAULT_TILE if backend.receptive_field is None else DEFAULT_LOCAL_TILE
        if tile < m:
            raise InputError(f"tile {tile} is smaller than the model's multiple {m}")
        self.tile = _round_up(int(tile), m)
        if overlap is None:
            rf = backend.receptive_field
            overlap = 4 * rf if rf is not None else DEFAULT_GLOBAL_OVERLAP
            # a small tile gets at most half its side (the most an overlap can be)
            overlap = min(_round_up(overlap, m), self.tile // 2 // m * m)
        overlap = _round_up(max(int(overlap), 0), m)
        if overlap > self.tile // 2:
            raise InputError(f"overlap {overlap} is more than half the tile {self.tile}: "
                             "use a larger --tile or a smaller --overlap")
        self.overlap = overlap
        if batch < 1:
            raise InputError("batch must be at least 1")
        self.batch = int(batch)

    @property
    def device(self) -> torch.device:
        return getattr(self.backend, "device", torch.device("cpu"))

    # -- tensors ----------------------------------------------------------------------
    def run_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W float in [0, 1] -> the same, on the back end's device."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected N x 3 x H x W frames, got {tuple(x.shape)}")
        n, _, h, w = x.shape
        m = self.multiple
        hp, wp = _round_up(h, m), _round_up(w, m)
        x = x.to(self.device, torch.float32)
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
        th, tw = min(self.tile, hp), min(self.tile, wp)
        ys, xs = tile_starts(hp, th, self.overlap), tile_starts(wp, tw, self.overlap)
        if len(ys) == 1 and len(xs) == 1:
            out = torch.cat([self.backend(x[i:i + self.batch]).to(self.device)
                             for i in range(0, n, self.batch)])
            return out[:, :, :h, :w]
        wy = {y0: feather(th, y0, hp, self.overlap) for y0 in ys}
        wx = {x0: feather(tw, x0, wp, self.overlap) for x0 in xs}
        out = torch.zeros((n, 3, hp, wp), dtype=torch.float32, device=self.device)
        norm = torch.zeros((1, 1, hp, wp), dtype=torch.float32, device=self.device)
        for y0 in ys:
            for x0 in xs:
                win = (wy[y0][:, None] * wx[x0][None, :]).to(self.device)
                norm[:, :, y0:y0 + th, x0:x0 + tw] += win
        jobs = [(i, y0, x0) for i in range(n) for y0 in ys for x0 in xs]
        for k in range(0, len(jobs), self.batch):
            chunk = jobs[k:k + self.batch]
            tiles = torch.stack([x[i, :, y0:y0 + th, x0:x0 + tw] for i, y0, x0 in chunk])
            res = self.backend(tiles).to(self.device, torch.float32)
            for r, (i, y0, x0) in zip(res, chunk):
                win = (wy[y0][:, None] * wx[x0][None, :]).to(self.device)
                out[i, :, y0:y0 + th, x0:x0 + tw] += r * win
        return (out / norm)[:, :, :h, :w]

    # -- uint8 frames -------------------------------------------------------------------
    def __call__(self, frames: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """N x H x W x 3 uint8 RGB (or one H x W x 3 frame) -> the same shape."""
        arr = np.asarray(frames) if isinstance(frames, np.ndarray) else np.stack(list(frames))
        single = arr.ndim == 3
        if single:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"expected uint8 N x H x W x 3 RGB frames, got "
                             f"{arr.dtype} {arr.shape}")
        if not arr.flags.writeable:  # torch wants writable memory (frames from bytes)
            arr = arr.copy()
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
        y = self.run_tensor(x)
        out = (y.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
        out = np.ascontiguousarray(out.cpu().numpy())
        return out[0] if single else out

    def describe(self) -> str:
        return (f"{self.backend.name}, tile {self.tile}, overlap {self.overlap}, "
                f"batch {self.batch}")
