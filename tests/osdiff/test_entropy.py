"""Entropy models and constriction coding of the latent codec: exact latents, rates that
match the likelihoods, integer tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gencodec.errors import BitstreamError
from gencodec.osdiff.entropy import (EntropyBottleneck, GaussianConditional, SymbolCoder,
                                     SymbolDecoder, pmf_to_quantized_cdf)


def test_quantized_cdf_keeps_every_symbol():
    cdf = pmf_to_quantized_cdf(np.array([0.7, 0.3, 1e-12, 0.0]))
    freq = np.diff(cdf)
    assert cdf[0] == 0 and cdf[-1] == 1 << 16 and (freq >= 1).all()
    assert abs(freq[0] / 65536 - 0.7) < 1e-3


def test_scale_indexes_round_up_to_the_table():
    gc = GaussianConditional()
    table = gc.scale_table
    s = torch.tensor([0.0, 0.11, 0.12, float(table[10]), float(table[10]) * 1.0001, 1e6])
    idx = gc.indexes(s)
    assert idx.tolist()[:2] == [0, 0] and idx[2] == 1 and idx[3] == 10 and idx[4] == 11
    assert idx[-1] == len(table) - 1
    assert (gc.scale_table[idx[1:-1]] >= s[1:-1]).all()


def test_likelihood_integrates_to_one():
    gc = GaussianConditional()
    v = torch.arange(-60, 61, dtype=torch.float32)
    for s in (0.2, 1.0, 7.5):
        assert abs(float(gc.likelihood(v, torch.full_like(v, s)).sum()) - 1) < 1e-4


def test_latent_round_trip_is_exact_and_rate_matches(osdiff_model, photo48x40):
    x = torch.from_numpy(np.ascontiguousarray(photo48x40[:32, :48].transpose(2, 0, 1)))[None]
    x = x.float() / 255
    lc = osdiff_model.latent_codec
    with torch.no_grad():
        y0 = osdiff_model.encode_latent(x)
        words, y_hat = lc.compress(y0)
        y_c, y_hat_fwd, liks = lc(y0, training=False)
    assert torch.equal(lc.decompress(words, y0.shape[-2:]), y_hat)
    # the forward pass (eval mode) rounds as the coder does
    assert torch.equal(y_hat_fwd, y_hat)
    # the coded size is the information content of the likelihoods (+ one word of ANS
    # state, + the integer tables' and table scales' overhead)
    bits = float(-sum(torch.log2(v).sum() for v in liks.values()))
    assert bits * 0.97 - 32 <= words.nbytes * 8 <= bits * 1.15 + 64


def test_leftover_words_are_refused():
    dec = SymbolDecoder(np.array([12345, 678], np.uint32))
    with pytest.raises(BitstreamError, match="does not end"):
        dec.finish()


def _coded_words():
    """A small stream: 3 channels of z symbols under a categorical, 40 residuals."""
    import constriction

    rng = np.random.default_rng(0)
    coder = SymbolCoder()
    model = constriction.stream.model.Categorical(np.full(5, 0.2), perfect=False)
    coder.add_z(rng.integers(0, 5, (3, 6)).astype(np.int32), [model] * 3)
    stds = np.full(40, 3.0)
    coder.add_residuals(torch.from_numpy(rng.integers(-6, 7, 40)), stds)
    return coder, [model] * 3, stds


def _decode(words, models, stds):
    dec = SymbolDecoder(words)
    z, res = dec.z(models, 6), dec.residuals(stds)
    dec.finish()
    return z, res


def test_words_round_trip_and_damage_is_refused():
    """Missing or extra words are refused by the end marker / leftover check
    (constriction itself reads zeros past the end without complaint)."""
    coder, models, stds = _coded_words()
    words = coder.encode()
    z, res = _decode(words, models, stds)
    assert np.array_equal(z, coder.z[0]) and np.array_equal(res, coder.groups[0][0])
    for damaged in (words[1:], words[:-1], np.append(words, np.uint32(12345)),
                    np.append(np.uint32(7), words)):
        with pytest.raises(BitstreamError):
            _decode(np.ascontiguousarray(damaged), models, stds)


def test_upper_tail_likelihood_does_not_cancel():
    """A density symmetric about 0 (zero biases and factors: the CDF's logit is odd):
    far in the upper tail, where sigmoid(u) - sigmoid(l) cancels in float32, the
    likelihood equals its lower-tail mirror instead of collapsing to the floor."""
    eb = EntropyBottleneck(1)
    with torch.no_grad():
        for name, p in eb.named_parameters():
            if name.startswith(("_bias", "_factor")):
                p.zero_()
        slope = float(eb._logits_cumulative(torch.ones(1, 1, 1), False))
    v = torch.tensor([[[15.0 / slope]]]).round()  # logit ~15: P(bin) ~ 3e-7 * slope
    with torch.no_grad():
        low, high = eb._likelihood(-v)[0], eb._likelihood(v)[0]
    assert 1e-9 < float(low) < 1e-5
    assert float(high) == pytest.approx(float(low), rel=1e-3)
