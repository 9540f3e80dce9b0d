"""The CUDA diff-BPG op (native/dbpg/intra_cuda.cu) against the CPU op: forward values,
gradients, determinism, dtypes and devices, gradcheck, and the whole surrogate in 4:2:0
and 4:4:4 (skipped without a GPU); the build and the host-side checks of the CUDA entry
points everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gencodec import _native
from gencodec.codecs_ext.surrogates import bpg_intra as bi
from gencodec.codecs_ext.surrogates import bpg_intra_cuda
from gencodec.codecs_ext.surrogates.bpg import BpgSurrogate
from gencodec.codecs_ext.surrogates.bpg_rate import BpgRateModel


def _cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


requires_cuda = pytest.mark.skipif(
    _cuda_devices() == 0 or not bpg_intra_cuda.available(),
    reason="no CUDA device" if _cuda_devices() == 0
    else "gencodec._native was built without CUDA")


def test_the_cuda_ops_are_built_exactly_when_cuda_is():
    compiled = bool(_native.build_info()["cuda_compiled"])
    assert bpg_intra_cuda.available() == compiled
    assert hasattr(_native, "dbpg_intra_backward_cuda") == compiled


@pytest.mark.skipif(not bpg_intra_cuda.available(), reason="built without CUDA")
def test_the_cuda_entry_points_check_their_arguments_on_the_host():
    """Bad shapes and step sizes are refused before any device memory is touched."""
    t = bi.intra_tables(8, 1, 1)
    args = bi._table_args(t)
    with pytest.raises(ValueError, match="multiples"):
        _native.dbpg_intra_forward_cuda(0, 1, 8, 12, np.ones(1), 0, 0, 0, *args, 1.0, 4, 0)
    with pytest.raises(ValueError, match="qstep"):
        _native.dbpg_intra_forward_cuda(0, 1, 8, 8, np.zeros(1), 0, 0, 0, *args, 1.0, 4, 0)
    with pytest.raises(ValueError, match="ref_grad"):
        _native.dbpg_intra_backward_cuda(0, 1, 8, 8, np.ones(1), 0, 0, 0, 0, 0, 0, *args, 1.0,
                                         4, float("nan"), 0)
    with pytest.raises(ValueError, match="shape"):
        _native.dbpg_intra_forward_cuda(0, -1, 8, 8, np.ones(1), 0, 0, 0, *args, 1.0, 4, 0)


@pytest.mark.skipif(not bpg_intra_cuda.available() or _cuda_devices() > 0,
                    reason="needs a CUDA build on a machine without a usable GPU")
def test_the_cuda_op_without_a_device_is_a_clear_error():
    t = bi.intra_tables(8, 1, 1)
    with pytest.raises(RuntimeError, match="CUDA error in diff-BPG"):
        _native.dbpg_intra_forward_cuda(0, 1, 8, 8, np.ones(1), 0, 0, 0, *bi._table_args(t),
                                        1.0, 4, 0)


# -- on a GPU --------------------------------------------------------------------------------
def _run(x, q, n, device, **code):
    """(recon, yhat, d/dx, d/dq) of the native op on ``device`` with fixed output weights."""
    xr = x.to(device).requires_grad_()
    qr = q.to(device).requires_grad_()
    rec, yhat = bi.intra_code(xr, qr, n, backend="native", **code)
    g = torch.Generator().manual_seed(1)
    w_rec = torch.randn(rec.shape, generator=g, dtype=rec.dtype).to(device)
    w_y = torch.randn(yhat.shape, generator=g, dtype=yhat.dtype).to(device)
    ((rec * w_rec).sum() + (yhat * w_y).sum()).backward()
    return [v.detach().cpu() for v in (rec, yhat, xr.grad, qr.grad)]


def _close(got, want, rtol):
    scale = max(1.0, float(want.abs().max()))
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("n,temperature,ref_grad,dst", [
    (4, 1.0, 1.0, True), (4, 0.0, 1.0, False), (8, 1.0, 1.0, False), (8, 0.3, 0.0, False),
    (8, 0.05, 0.5, False), (16, 0.0, 1.0, False), (16, 2.0, 0.1, False), (32, 1.0, 1.0, False),
    (32, 0.0, 0.3, False)])
def test_cuda_equals_cpu(n, temperature, ref_grad, dst):
    """Values within 1e-5 and gradients close on small planes (short block chains: the
    closed loop amplifies the last-bit differences of sin/cos/exp on long ones)."""
    rng = np.random.default_rng(n + int(10 * temperature))
    x = torch.tensor(rng.uniform(20, 235, (3, 2 * n, 3 * n)))
    q = torch.tensor([1.5, 6.0, 20.0], dtype=torch.float64)
    code = dict(temperature=temperature, terms=8, dst=dst, ref_grad=ref_grad)
    cpu = _run(x, q, n, "cpu", **code)
    gpu = _run(x, q, n, "cuda", **code)
    torch.testing.assert_close(gpu[0], cpu[0], rtol=0, atol=1e-5)  # recon, 0..255
    torch.testing.assert_close(gpu[1], cpu[1], rtol=0, atol=1e-5)  # yhat
    _close(gpu[2], cpu[2], 1e-6)
    _close(gpu[3], cpu[3], 1e-6)


@pytest.mark.cuda
@requires_cuda
def test_cuda_is_deterministic():
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.uniform(0, 255, (4, 64, 48)))
    q = torch.tensor([2.0, 5.0, 11.0, 30.0], dtype=torch.float64)
    first = _run(x, q, 8, "cuda", temperature=0.7, terms=10, ref_grad=0.3)
    again = _run(x, q, 8, "cuda", temperature=0.7, terms=10, ref_grad=0.3)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


@pytest.mark.cuda
@requires_cuda
def test_cuda_keeps_dtypes_and_devices():
    x = (torch.rand(2, 16, 16) * 255).cuda().requires_grad_()
    q = torch.tensor([4.0, 9.0], requires_grad=True)  # step sizes may stay on the CPU
    rec, yhat = bi.intra_code(x, q, 8, temperature=1.0, terms=4, backend="native")
    assert rec.dtype == yhat.dtype == torch.float32 and rec.is_cuda and yhat.is_cuda
    (rec.sum() + yhat.sum()).backward()
    assert x.grad.is_cuda and x.grad.dtype == torch.float32
    assert q.grad.device.type == "cpu" and torch.isfinite(q.grad).all()
    cpu = bi.intra_code(x.detach().cpu().double(), q.detach().double(), 8, temperature=1.0,
                        terms=4, backend="native")[0]
    assert float((rec.detach().cpu().double() - cpu).abs().max()) < 1e-3


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("n,temperature,dst", [(4, 1.0, True), (4, 0.0, False), (8, 2.0, False)])
def test_cuda_gradcheck(n, temperature, dst):
    rng = np.random.default_rng(n)
    x = torch.tensor(rng.uniform(40, 215, (2, 2 * n, 2 * n)), device="cuda", requires_grad=True)
    q = torch.tensor([3.0, 7.0], dtype=torch.float64, device="cuda", requires_grad=True)

    def f(x, q):
        return bi.NativeIntraCode.apply(x, q, n, dst, temperature, 3, 1.0)

    assert torch.autograd.gradcheck(f, (x, q), eps=1e-6, atol=1e-4, rtol=1e-3)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("block_size,chroma,temperature", [
    (8, "420", 1.0), (16, "420", 0.0), (4, "444", 0.5), (8, "444", 1.0)])
def test_cuda_surrogate_equals_cpu(block_size, chroma, temperature):
    """The whole diff-BPG surrogate (colour, 4:2:0 or 4:4:4 planes, QPs per image, rate
    model built from its config) on the GPU against the CPU: pictures, bits and their
    gradients in the input and the QP. Pictures of 2 x 3 luma blocks: on 8 x 12 blocks of
    4 the closed loop already turns input noise of 1e-14 into changes of 0.04."""
    rng = np.random.default_rng(block_size)
    x = torch.tensor(rng.uniform(0, 1, (3, 3, 2 * block_size, 3 * block_size)))
    qp = torch.tensor([22.0, 34.5, 47.0], dtype=torch.float64)
    torch.manual_seed(0)
    rate = BpgRateModel(luma_block=block_size, chroma=chroma).double()
    results = []
    for device in ("cpu", "cuda"):
        model = BpgSurrogate(block_size=block_size, chroma=chroma, temperature=temperature,
                             terms=8, backend="native", rate_model=rate).to(device)
        xr, qr = x.to(device).requires_grad_(), qp.to(device).requires_grad_()
        x_hat, bits = model(xr, qr)
        (x_hat.sum() * 100.0 + bits.sum() / 1000.0).backward()
        results.append([v.detach().cpu() for v in (x_hat, bits, xr.grad, qr.grad)])
    cpu, gpu = results
    torch.testing.assert_close(gpu[0], cpu[0], rtol=0, atol=1e-5)
    _close(gpu[1], cpu[1], 1e-6)
    _close(gpu[2], cpu[2], 1e-5)
    _close(gpu[3], cpu[3], 1e-5)
