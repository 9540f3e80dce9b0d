"""Tiled inference: equal to whole-frame inference for local models, bounded seams
for global ones, any size, batching that does not change results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gencodec.errors import InputError
from gencodec.filters import load_frame_model
from gencodec.filters.backends import TorchBackend
from gencodec.filters.model import FrameModel
from gencodec.filters.runner import FrameRunner, feather, tile_starts


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def seam_profile(out: torch.Tensor, ref: torch.Tensor, axis: int) -> torch.Tensor:
    """Per line along ``axis``: the mean jump of the tiling error ``out - ref`` to the
    next line, in 8-bit code values. A seam is a line where the error jumps."""
    err = (out - ref) * 255.0
    dims = tuple(d for d in range(4) if d != axis)
    return err.diff(dim=axis).abs().mean(dim=dims)


def seam_at(profile: torch.Tensor, starts: list[int], tile: int) -> float:
    """The worst spike of the profile within 8 lines of a tile transition: a line's
    jump minus the median jump of the 3 lines on each side of it."""
    lines = set(starts[1:]) | {s + tile - 1 for s in starts[:-1]}
    n, worst = len(profile), 0.0
    for p in lines:
        for q in range(max(p - 8, 3), min(p + 8, n - 3)):
            side = torch.cat([profile[q - 3:q], profile[q + 1:q + 4]])
            worst = max(worst, (profile[q] - side.median()).item())
    return worst


def test_tile_geometry():
    assert tile_starts(100, 128, 32) == [0]
    starts = tile_starts(1000, 256, 64)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))
    w1, w2 = feather(64, 0, 96, 32), feather(64, 32, 96, 32)
    assert w1[0] == 1 and w1[-1] == 0 and w2[0] == 0 and w2[-1] == 1
    total = torch.zeros(96)
    total[:64] += w1
    total[32:] += w2
    assert total.min() > 0.99 and total.max() < 1.01  # a partition of unity


@pytest.mark.parametrize("size", [(101, 123), (300, 206)])
def test_compact_tiled_equals_untiled(compact_dir, photo, size):
    m = load_frame_model(compact_dir)
    img = np.resize(photo, (*size, 3)) if size != photo.shape[:2] else photo
    x = _tensor(np.ascontiguousarray(img))
    ref = FrameRunner(TorchBackend(m), tile=1024).run_tensor(x)
    tiled_runner = FrameRunner(TorchBackend(m), tile=104, batch=3)
    assert tiled_runner.overlap >= 4 * m.receptive_field
    tiled = tiled_runner.run_tensor(x)
    assert tiled.shape == x.shape
    assert (tiled - ref).abs().max().item() < 1e-4  # everywhere, the interior included
    assert (ref - x).abs().mean().item() > 0.01  # the model does change the image


def test_too_small_overlap_shows_seams(compact_dir, photo):
    m = load_frame_model(compact_dir)
    x = _tensor(photo)
    ref = FrameRunner(TorchBackend(m), tile=1024).run_tensor(x)
    hard = FrameRunner(TorchBackend(m), tile=64, overlap=0).run_tensor(x)
    assert (hard - ref).abs().max().item() > 1e-3  # what the context margin prevents


class GlobalStatsToy(FrameModel):
    """A smooth stand-in for GroupNorm's effect: contrast stretched around the mean of
    whatever it is given, so each tile gets its own gain, like a normalised network."""

    multiple, receptive_field, architecture = 8, None, "toy"

    def forward(self, x):
        return (x + 0.5 * (x - x.mean(dim=(1, 2, 3), keepdim=True))).clamp(0.0, 1.0)


def test_feathering_bounds_seams_of_global_models(photo):
    x = _tensor(photo)
    ref = FrameRunner(TorchBackend(GlobalStatsToy()), tile=1024).run_tensor(x)
    for axis, length in ((3, photo.shape[1]), (2, photo.shape[0])):
        soft = FrameRunner(TorchBackend(GlobalStatsToy()), tile=64, overlap=32).run_tensor(x)
        hard = FrameRunner(TorchBackend(GlobalStatsToy()), tile=64, overlap=0).run_tensor(x)
        pad = -(-length // 8) * 8
        seam_soft = seam_at(seam_profile(soft, ref, axis), tile_starts(pad, 64, 32), 64)
        seam_hard = seam_at(seam_profile(hard, ref, axis), tile_starts(pad, 64, 0), 64)
        assert seam_soft < 1.0, seam_soft  # code values
        assert seam_hard > 2.0 and seam_hard > 2.5 * seam_soft, (seam_hard, seam_soft)


def test_onestep_tiled_any_size(onestep_dir, photo):
    """The SD-layout model tiles at odd sizes, deterministically. GroupNorm and
    attention see the whole tile, so tiles cannot equal the whole frame (the random
    weights make its output noise-like): the steps across tile transitions are
    measured against the whole-frame output's steps at the same lines and bounded."""
    m = load_frame_model(onestep_dir)
    x = _tensor(photo[:61, :117])
    ref = FrameRunner(TorchBackend(m), tile=1024).run_tensor(x)
    runner = FrameRunner(TorchBackend(m), tile=64, overlap=32, batch=8)
    a = runner.run_tensor(x)
    assert a.shape == x.shape and 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, runner.run_tensor(x))
    profile = seam_profile(a, ref, axis=3)
    seam = seam_at(profile, tile_starts(120, 64, 32), 64)
    assert seam < 3.0 * profile.median().item(), (seam, profile.median().item())


def test_batching_and_uint8_interface(compact_dir, photo):
    m = load_frame_model(compact_dir)
    frames = np.stack([photo, photo[::-1].copy(), photo[:, ::-1].copy()])
    one = FrameRunner(TorchBackend(m), tile=104, batch=1)(frames)
    many = FrameRunner(TorchBackend(m), tile=104, batch=7)(frames)
    assert one.dtype == np.uint8 and one.shape == frames.shape
    assert np.abs(one.astype(int) - many.astype(int)).max() <= 1
    np.testing.assert_array_equal(one[0], FrameRunner(TorchBackend(m), tile=104)(photo))


def test_runner_rejects_bad_settings(compact_dir):
    m = load_frame_model(compact_dir)
    with pytest.raises(InputError, match="more than half"):
        FrameRunner(TorchBackend(m), tile=64, overlap=60)
    with pytest.raises(InputError, match="fp16 runs on CUDA only"):
        TorchBackend(m, precision="fp16")
    with pytest.raises(InputError, match="uint8"):
        FrameRunner(TorchBackend(m))(np.zeros((8, 8, 3), np.float32))


def test_onnx_backend_matches_torch(compact_dir, photo):
    from gencodec.filters.backends import OrtBackend

    m = load_frame_model(compact_dir)
    ort = OrtBackend.from_model(m)
    assert ort.multiple == 2 and ort.receptive_field == m.receptive_field
    x = _tensor(photo)
    a = FrameRunner(TorchBackend(m), tile=104).run_tensor(x)
    b = FrameRunner(ort, tile=104).run_tensor(x)
    assert (a - b).abs().max().item() < 1e-4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precision(compact_dir, photo, precision):
    m = load_frame_model(compact_dir)
    x = _tensor(photo)
    ref = FrameRunner(TorchBackend(m), tile=104).run_tensor(x)
    out = FrameRunner(TorchBackend(load_frame_model(compact_dir), "cuda", precision),
                      tile=104).run_tensor(x).cpu()
    assert (out - ref).abs().mean().item() < 0.02


def test_default_overlap_scales_down_with_small_tiles(photo):
    """The default compact network (receptive field 21) wanted an 84-pixel overlap,
    which a 96-pixel tile cannot have: --tile 96 failed. The automatic overlap is now
    at most half the tile; an explicit one still has to fit."""
    from gencodec.filters.compact import CompactFilterNet

    torch.manual_seed(0)
    m = CompactFilterNet().eval()
    assert 4 * m.receptive_field > 96 // 2
    runner = FrameRunner(TorchBackend(m), tile=96)
    assert runner.overlap == 48
    x = _tensor(photo)
    ref = FrameRunner(TorchBackend(m), tile=1024).run_tensor(x)
    out = runner.run_tensor(x)
    assert out.shape == x.shape
    assert (out - ref).abs().mean().item() < 2e-3  # cross-faded, close to whole-frame
    assert FrameRunner(TorchBackend(m), tile=512).overlap == 4 * m.receptive_field
    with pytest.raises(InputError, match="more than half"):
        FrameRunner(TorchBackend(m), tile=96, overlap=84)
