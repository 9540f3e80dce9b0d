"""The CUDA coder agrees with the CPU coder: the same normals and the same indices
(skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from gencodec import _native, rcc
from gencodec.errors import InputError

from .conftest import random_chunk, requires_cuda

pytestmark = pytest.mark.cuda


def test_cuda_device_is_rejected_cleanly_without_a_gpu():
    if _native.build_info()["cuda_devices"] > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(InputError, match="device='cuda' but no CUDA device"):
        rcc.encode_step(np.zeros(2), 1.0, np.zeros(2), 1.0, seed=0, step=0, device="cuda")


@requires_cuda
def test_cuda_normals_equal_cpu_normals():
    for start, count in [(0, 1), (5, 1_000_003), (2**40 - 3, 4099)]:
        cpu = rcc.philox_normals(3, 1, 4, start, count)
        gpu = rcc.philox_normals(3, 1, 4, start, count, device="cuda")
        np.testing.assert_array_equal(cpu.view(np.uint32), gpu.view(np.uint32))


@requires_cuda
@pytest.mark.parametrize(
    "d,k", [(1, 20), (3, 16), (4, 12), (17, 16), (255, 14), (1024, 16), (4096, 12), (1023, 10)]
)
def test_cuda_indices_equal_cpu_indices(d, k):
    for seed in range(3):
        mu_q, sigma_q, mu_p, sigma_p = random_chunk(d, seed, kl_per_dim=(k - 2) / d)
        args = dict(seed=seed, step=2, chunk=d, chunk_bits=k)
        i_cpu, z_cpu = rcc.pfr_encode_chunk(mu_q, sigma_q, mu_p, sigma_p, **args)
        i_gpu, z_gpu = rcc.pfr_encode_chunk(mu_q, sigma_q, mu_p, sigma_p, **args, device="cuda")
        assert i_cpu == i_gpu
        np.testing.assert_array_equal(z_cpu, z_gpu)
        np.testing.assert_array_equal(z_gpu, rcc.pfr_decode_chunk(mu_p, sigma_p, i_gpu, **args))


@requires_cuda
def test_cuda_step_round_trip():
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(4 * 32 * 32, 7, kl_per_dim=0.02)
    code_gpu, z_gpu = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, seed=1, step=9, device="cuda")
    code_cpu, z_cpu = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, seed=1, step=9)
    assert code_gpu == code_cpu
    np.testing.assert_array_equal(
        z_gpu, rcc.decode_step(mu_p, sigma_p, code_gpu, seed=1, step=9, device="cuda")
    )
    np.testing.assert_array_equal(z_gpu, z_cpu)


@requires_cuda
@pytest.mark.parametrize(
    "n,k,chunks",
    [(1, 1, 1), (3, 16, 1), (1023, 10, 2), (4099, 8, 17), (999, 6, 250), (257, 4, 257),
     (24576, 16, 24), (200, 20, 200)],  # the last needs two launches (> 2^27 candidates)
)
def test_cuda_whole_step_equals_cpu(n, k, chunks):
    """One launch over chunks x candidates picks the CPU's indices."""
    mu_q, sigma_q, mu_p, sigma_p = random_chunk(n, n + k, kl_per_dim=min(1.0, k * chunks / n))
    args = dict(seed=5, step=k, chunk_bits=k, n_chunks=chunks)
    code_cpu, z_cpu = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, **args)
    code_gpu, z_gpu = rcc.encode_step(mu_q, sigma_q, mu_p, sigma_p, **args, device="cuda")
    assert code_gpu == code_cpu
    np.testing.assert_array_equal(z_gpu, z_cpu)
