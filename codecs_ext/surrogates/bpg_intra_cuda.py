"""The CUDA path of :class:`.bpg_intra.NativeIntraCode`: the same closed-loop intra
coding (prediction from reconstructed neighbours, soft-argmin mode choice, transform,
Fourier rounding; Guo et al., section "Differentiable BPG Codec") by
``native/dbpg/intra_cuda.cu`` on the tensors' GPU, forward and backward, float64
inside, one launch per wavefront of blocks (that file documents the launch layout).

:class:`.bpg_intra.NativeIntraCode` comes here for CUDA tensors when
``gencodec._native`` was built with a CUDA toolkit (:func:`available`); otherwise CUDA
tensors take the CPU op. Every value is computed in a fixed order (no atomics), so a
GPU run is deterministic; the results equal the CPU op's to float64 rounding, up to the
closed loop's amplification of rounding differences on long block chains (see
:func:`.bpg_intra.intra_code_reference`).
"""

from __future__ import annotations

import torch

from . import bpg_intra as bi
from . import hevc_intra as hi


def available() -> bool:
    """Whether ``gencodec._native`` has the CUDA diff-BPG ops (built with CUDA)."""
    try:
        return hasattr(bi._native(), "dbpg_intra_forward_cuda")
    except ImportError:
        return False


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def forward(ctx, planes, qstep, n, dst, temperature, terms, ref_grad):
    """:meth:`.bpg_intra.NativeIntraCode.forward` for ``planes`` on a CUDA device."""
    p, h, w = planes.shape
    t = bi.intra_tables(n, h // n, w // n, dst)
    x = planes.detach().to(torch.float64).contiguous()
    qs = qstep.detach().to("cpu", torch.float64).contiguous()  # checked on the host
    recon = torch.empty_like(x)
    yhat = x.new_empty(p, t.blocks, n, n)
    cost = x.new_empty(p, t.blocks, hi.NUM_MODES)
    with torch.cuda.device(x.device):
        bi._native().dbpg_intra_forward_cuda(
            x.data_ptr(), p, h, w, qs.numpy(), recon.data_ptr(), yhat.data_ptr(),
            cost.data_ptr(), *bi._table_args(t), float(temperature), int(terms),
            _stream(x.device))
    ctx.save_for_backward(x, qs, recon, cost)
    ctx.setup = (t, float(temperature), int(terms), float(ref_grad), planes.dtype,
                 qstep.device, qstep.dtype)
    return recon.to(planes.dtype), yhat.to(planes.dtype)


def backward(ctx, grad_recon, grad_yhat):
    """:meth:`.bpg_intra.NativeIntraCode.backward` of :func:`forward`."""
    x, qs, recon, cost = ctx.saved_tensors
    t, temperature, terms, ref_grad, dtype, qdevice, qdtype = ctx.setup
    p, h, w = x.shape
    g_acc = torch.zeros_like(recon)  # the op accumulates into it
    if grad_recon is not None:
        g_acc.copy_(grad_recon)
    g_yhat = (x.new_zeros(p, t.blocks, t.n, t.n) if grad_yhat is None
              else grad_yhat.to(torch.float64).contiguous())
    g_x, g_q = torch.empty_like(x), x.new_empty(p)
    with torch.cuda.device(x.device):
        bi._native().dbpg_intra_backward_cuda(
            x.data_ptr(), p, h, w, qs.numpy(), recon.data_ptr(), cost.data_ptr(),
            g_acc.data_ptr(), g_yhat.data_ptr(), g_x.data_ptr(), g_q.data_ptr(),
            *bi._table_args(t), temperature, terms, ref_grad, _stream(x.device))
    return g_x.to(dtype), g_q.to(qdevice, qdtype), None, None, None, None, None
