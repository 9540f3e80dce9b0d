"""Differentiable surrogates of the stock codecs, for training through them.

Each surrogate is a ``torch.nn.Module`` whose ``forward(x, qp_or_quality)`` takes float
RGB ``N x 3 x H x W`` in [0, 1] and returns ``(x_hat, bits)``: the reconstruction the
real codec would give and the number of bits per image it would spend, both
differentiable with respect to ``x`` and the quality parameter. They share the
Fourier-series rounding of :mod:`.rounding`."""

from __future__ import annotations

import importlib

#: Registry (name -> "module:Class"), as gencodec.codecs_ext.CODECS; the name is the
#: stock codec the surrogate imitates. Classes are imported on first use (torch).
SURROGATES: dict[str, str] = {
    "jpeg": "jpeg:JpegSurrogate",
    "bpg": "bpg:BpgSurrogate",
}


def get_surrogate(name: str, **options):
    """Build the surrogate of codec ``name`` with its options."""
    from gencodec.errors import InputError

    try:
        target = SURROGATES[name]
    except KeyError:
        raise InputError(f"no differentiable surrogate for codec {name!r}; available: "
                         f"{', '.join(SURROGATES) or 'none'}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(**options)
