"""DiffC through the whole-step coder writes the stream the per-chunk coder writes,
byte for byte, and replays the same x_t."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gencodec.rcc", reason="the native PFR coder gencodec.rcc is needed")

from gencodec import rcc
from gencodec.diffc import bitstream
from gencodec.diffc.coder import DiffC


def test_payload_equals_the_per_chunk_coders(spectral, small_profile, photo32, monkeypatch):
    coder = DiffC(spectral, small_profile)
    x0 = spectral.encode_image(photo32)
    new = coder.encode_latent(x0, 8, seed=11)
    x_new, _ = coder.replay(bitstream.read_payload(new.payload), x0.shape)
    monkeypatch.setattr(rcc, "encode_step", rcc.encode_step_per_chunk)
    monkeypatch.setattr(rcc, "decode_step", rcc.decode_step_per_chunk)
    old = coder.encode_latent(x0, 8, seed=11)
    x_old, _ = coder.replay(bitstream.read_payload(old.payload), x0.shape)
    assert new.payload == old.payload
    assert [s.n_chunks for s in new.steps] == [s.n_chunks for s in old.steps]
    assert sum(s.n_chunks for s in new.steps) > 8  # several chunks per step
    np.testing.assert_array_equal(new.x_t, old.x_t)
    np.testing.assert_array_equal(x_new, new.x_t)
    np.testing.assert_array_equal(x_old, x_new)
