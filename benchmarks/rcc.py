"""PFR chunk coding speed: the native coder (gencodec.rcc) against the plain PyTorch
approach of the DiffC paper's appendix A.5 (``randn(batch, d) @ mu`` in batches,
then the Poisson arrival times and the argmin), in the same run on the same input.

Figure of merit: candidate-dimensions scored per second (2^k * d / seconds per chunk),
wall clock, each side with all the cores it can use (the native coder's OpenMP threads;
torch's matmul threads, though torch draws randn on one thread). The CPU-s ratio
(torch's process CPU seconds over the native coder's) compares the work per core and
holds on a loaded machine, where the wall ratio does not.

    python benchmarks/rcc.py                 # d = 256, 1024, 4096 at k = 16
    python benchmarks/rcc.py --dims 1024 --bits 16 --repeats 5 --json out.json

On a machine with a CUDA device the native GPU coder is timed as well (milliseconds
per chunk; the paper reports under 3 ms for a 16-bit chunk on an A40).
benchmarks/rcc_ceiling.cpp breaks one thread of the AVX-512 (or AVX2) kernel down by stage
and bounds what a cheaper generator or normal transform could gain (AVX2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from gencodec import _native, rcc


def _inputs(d: int, bits: int):
    """A chunk of the kind DiffC codes: KL of about bits - 2, spread over d dimensions."""
    rng = np.random.default_rng(d)
    mu_p = rng.normal(size=d)
    sigma_p = np.ones(d)
    sigma_q = np.full(d, 0.98)
    kl_nats_per_dim = (bits - 2) * np.log(2) / d
    mu_q = mu_p + np.sqrt(2 * kl_nats_per_dim) * rng.choice([-1.0, 1.0], size=d)
    return mu_q, sigma_q, mu_p, sigma_p


def torch_reference(
    mu_q, sigma_q, mu_p, sigma_p, bits: int, seed: int, device: str = "cpu", batch: int = 256
) -> int:
    """The paper's PyTorch coder (appendix A.5): log w = randn(batch, d) @ w in batches,
    which is exact for q and p with one shared variance (w = (mu_q - mu_p) / sigma_p),
    then PFR's argmin of log T - log w. Cheaper per candidate than the general diagonal
    score the native coder computes, so the ratio is conservative."""
    g = torch.Generator(device=device).manual_seed(seed)
    w = torch.tensor((mu_q - mu_p) / sigma_p, dtype=torch.float32, device=device)
    K = 2**bits
    log_w = torch.cat(
        [torch.randn(batch, w.numel(), generator=g, device=device) @ w for _ in range(K // batch)]
    )
    t = torch.cumsum(torch.empty(K, device=device).exponential_(generator=g), 0)
    return int(torch.argmin(torch.log(t) - log_w))


def _time(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (all threads of the process) of fn."""
    fn()  # warm up (thread pools, allocations, CUDA context)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dims", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    info = _native.build_info()
    gpu = info["cuda_devices"] > 0
    print(
        f"native kernel {rcc.cpu_kernel()}, OpenMP threads {info['openmp_threads']}, torch threads "
        f"{torch.get_num_threads()} (float32; torch draws randn on one thread whatever the "
        f"setting), CUDA devices {info['cuda_devices']}; k = {args.bits}; load "
        f"{os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'d':>6} {'native cand-dim/s':>18} {'torch cand-dim/s':>17} {'ratio':>7} "
        f"{'native ms':>10} {'torch ms':>9} {'CPU-s ratio':>12}"
    )
    if gpu:
        header += f" {'cuda ms':>8} {'cuda cand-dim/s':>16}"
    print(header)
    rows = []
    for d in args.dims:
        q = _inputs(d, args.bits)
        work = 2**args.bits * d

        def native(q=q):
            return rcc.pfr_encode_chunk(*q, seed=1, step=0, chunk=0, chunk_bits=args.bits)

        def reference(q=q):
            return torch_reference(*q, bits=args.bits, seed=1)

        (t_native, c_native), (t_torch, c_torch) = (
            _time(native, args.repeats),
            _time(reference, args.repeats),
        )
        row = {
            "d": d,
            "bits": args.bits,
            "native_s": t_native,
            "torch_s": t_torch,
            "native_cpu_s": c_native,
            "torch_cpu_s": c_torch,
            "native_rate": work / t_native,
            "torch_rate": work / t_torch,
            "ratio": t_torch / t_native,
            "cpu_ratio": c_torch / c_native,
        }
        line = (
            f"{d:>6} {row['native_rate']:>18.3e} {row['torch_rate']:>17.3e} {row['ratio']:>6.1f}x "
            f"{t_native * 1e3:>10.1f} {t_torch * 1e3:>9.1f} {row['cpu_ratio']:>11.1f}x"
        )
        if gpu:

            def cuda(q=q):
                return rcc.pfr_encode_chunk(
                    *q, seed=1, step=0, chunk=0, chunk_bits=args.bits, device="cuda"
                )

            t_cuda = _time(cuda, max(args.repeats, 10))[0]
            row.update(cuda_s=t_cuda, cuda_rate=work / t_cuda)
            line += f" {t_cuda * 1e3:>8.3f} {work / t_cuda:>16.3e}"
        rows.append(row)
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kernel": rcc.cpu_kernel(), "threads": threads, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
