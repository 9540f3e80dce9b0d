"""Fixed per-step KL budgets (the paper's "mean" schedule) against adaptive ones."""

from __future__ import annotations

import numpy as np
import pytest

from gencodec.diffc.coder import DiffC
from gencodec.diffc.profile import Profile
from gencodec.errors import BitstreamError, InputError
from gencodec.rcc import n_chunks_for


def _fixed(spectral, small_profile, x0) -> Profile:
    """Budgets = the mean D_KL of each step measured on this very latent (as calibration
    would on a one-image set), so the fixed schedule is known exactly."""
    adaptive = DiffC(spectral, small_profile).encode_latent(x0, small_profile.num_steps)
    kl = tuple(s.kl_bits for s in adaptive.steps)
    return small_profile.replace(budget="fixed", kl_bits=kl, kl_dims=x0.size)


def test_fixed_budget_chunk_counts_follow_the_profile(spectral, small_profile, photo32):
    x0 = spectral.encode_image(photo32)
    prof = _fixed(spectral, small_profile, x0)
    enc = DiffC(spectral, prof).encode_latent(x0, prof.num_steps)
    for k, step in enumerate(enc.steps):
        assert step.n_chunks == n_chunks_for(prof.kl_bits[k], prof.chunk_bits,
                                             prof.padding_bits)
    # Budgets scale with the latent size: twice the dimensions, twice the KL.
    assert prof.fixed_chunks(5, 2 * x0.size) == n_chunks_for(
        2 * prof.kl_bits[5], prof.chunk_bits, prof.padding_bits)


def test_fixed_budget_replays_exactly(spectral, small_profile, photo32):
    x0 = spectral.encode_image(photo32)
    prof = _fixed(spectral, small_profile, x0)
    coder = DiffC(spectral, prof)
    enc = coder.encode_latent(x0, prof.num_steps)
    from gencodec.diffc import bitstream

    x_t, _ = coder.replay(bitstream.read_payload(enc.payload), x0.shape)
    assert np.array_equal(x_t, enc.x_t)


def test_half_budget_changes_the_stream_and_is_checked(spectral, small_profile, photo32):
    x0 = spectral.encode_image(photo32)
    prof = _fixed(spectral, small_profile, x0)
    half = prof.replace(kl_bits=tuple(v / 2 for v in prof.kl_bits))
    full_enc = DiffC(spectral, prof).encode_latent(x0, prof.num_steps)
    half_enc = DiffC(spectral, half).encode_latent(x0, half.num_steps)
    assert len(half_enc.payload) < len(full_enc.payload)
    # A decoder with the other budget refuses the stream rather than replaying garbage.
    from gencodec.diffc import bitstream

    with pytest.raises(BitstreamError, match="fixed budget"):
        DiffC(spectral, prof).replay(bitstream.read_payload(half_enc.payload), x0.shape)


def test_fixed_budget_profile_needs_calibration_data(small_profile):
    with pytest.raises(InputError, match="kl_bits and kl_dims"):
        small_profile.replace(budget="fixed")
    with pytest.raises(InputError, match="budget"):
        small_profile.replace(budget="mean-ish")


def test_profile_json_round_trip_keeps_the_budget(small_profile, tmp_path):
    prof = small_profile.replace(budget="fixed", kl_bits=(1.0,) * small_profile.num_steps,
                                 kl_dims=3072)
    prof.save(tmp_path / "p.json")
    back = Profile.load(tmp_path / "p.json")
    assert back == prof and back.sha256() == prof.sha256()
    assert back.sha256() != small_profile.sha256()


def test_fixed_budget_in_memory_equals_the_saved_profile(spectral, small_profile, photo32,
                                                         tmp_path):
    """kl_bits were rounded only when written: an encoder holding the calibrated
    profile in memory could size a step one chunk apart from a decoder that loads the
    file (same fingerprint), on a latent much larger than the calibration size."""
    from gencodec.diffc import bitstream

    x0 = spectral.encode_image(photo32)
    # 6 bits per chunk, a latent 1024x the calibration size: 6.0002 bits scale to
    # 1025 chunks, their saved rounding 6.0 to 1024
    kl = 6.0002
    prof = small_profile.replace(budget="fixed", kl_bits=(kl,) * small_profile.num_steps,
                                 kl_dims=x0.size // 1024)
    prof.save(tmp_path / "p.json")
    loaded = Profile.load(tmp_path / "p.json")
    assert loaded == prof and loaded.sha256() == prof.sha256()
    assert prof.fixed_chunks(0, x0.size) == loaded.fixed_chunks(0, x0.size)
    enc = DiffC(spectral, prof).encode_latent(x0, 2)
    x_t, _ = DiffC(spectral, loaded).replay(bitstream.read_payload(enc.payload), x0.shape)
    np.testing.assert_array_equal(x_t, enc.x_t)
