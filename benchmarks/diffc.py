#!/usr/bin/env python3
"""DiffC timings and rate-distortion.

Coder paths (CPU): encode and decode of astronaut 512x512 with the embedded model at
16 steps, end to end, through the per-chunk coder (the numpy checks and KL, one native
call per chunk: the code before the whole-step coder) and through the whole-step
coder (one native call per step), alternated in the same run: median wall and CPU
seconds and their ratios, and a check that both write the same stream.

CPU: the embedded gaussian-spectral model on astronaut 512x512: encode and decode
seconds, bits per pixel and PSNR of each reconstruction (DiffC-F ddim, DiffC-A, x0),
against JPEG at the same bpp (the ratio columns are measured in the same run).

GPU (--sd21, needs CUDA): an SD 2.1-architecture UNet + VAE with random weights (the
timing is the same as the real weights') at 512x768: seconds per model evaluation and
per RCC step, and the encode/decode times they imply for the paper's step counts
(Table 1, SD 2.1 on an A40: encode 0.6-8.8 s, decode 2.8-8.2 s).

    python benchmarks/diffc.py [--json out.json] [--sd21] [--no-rd] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import numpy as np


def psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255 ** 2 / mse))


@contextlib.contextmanager
def per_chunk_coder():
    """DiffC through the per-chunk coder: numpy checks and KL, one native call per chunk."""
    from gencodec import rcc

    def numpy_kl_bits(mu_q, sigma_q, mu_p, sigma_p):
        mq, sq, mp, sp, _ = rcc._gaussians(mu_q, sigma_q, mu_p, sigma_p)
        return float(rcc._kl_bits_per_dim(mq, sq, mp, sp).sum())

    saved = rcc.encode_step, rcc.decode_step, rcc.gaussian_kl_bits
    rcc.encode_step, rcc.decode_step = rcc.encode_step_per_chunk, rcc.decode_step_per_chunk
    rcc.gaussian_kl_bits = numpy_kl_bits
    try:
        yield
    finally:
        rcc.encode_step, rcc.decode_step, rcc.gaussian_kl_bits = saved


def _clock(fn):
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def coder_paths(steps: int = 16, repeats: int = 3) -> dict:
    """Per-chunk vs whole-step coder, end to end, alternated ``repeats`` times."""
    from skimage import data

    from gencodec import rcc
    from gencodec.codecs_ext import get_codec

    image = data.astronaut()
    times = {f"{p}_{op}_{k}": [] for p in ("per_chunk", "whole_step")
             for op in ("encode", "decode") for k in ("wall", "cpu")}
    streams = {}
    print(f"coder paths: astronaut 512x512, embedded model, {steps} steps, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, kernel {rcc.cpu_kernel()}",
          flush=True)
    for rep in range(repeats + 1):  # the first round warms up (not counted)
        for path in ("per_chunk", "whole_step"):
            with per_chunk_coder() if path == "per_chunk" else contextlib.nullcontext():
                codec = get_codec("diffc")  # a fresh codec: no cached payload
                stream, ew, ec = _clock(lambda: codec.encode(image, quality=steps))
                _, dw, dc = _clock(lambda: codec.decode(stream))
            streams[path] = stream
            if rep:
                for key, v in (("encode_wall", ew), ("encode_cpu", ec), ("decode_wall", dw),
                               ("decode_cpu", dc)):
                    times[f"{path}_{key}"].append(v)
    if streams["per_chunk"] != streams["whole_step"]:
        raise SystemExit("the two coders wrote different streams")
    out = {"steps": steps, "repeats": repeats, "bytes": len(streams["whole_step"]),
           "load_after": os.getloadavg()[0], "same_stream": True}
    out.update({k: statistics.median(v) for k, v in times.items()})
    print(f"{'':8} {'per-chunk s':>12} {'whole-step s':>13} {'ratio':>7}   (wall; CPU in brackets)")
    for op in ("encode", "decode"):
        a, b = out[f"per_chunk_{op}_wall"], out[f"whole_step_{op}_wall"]
        ac, bc = out[f"per_chunk_{op}_cpu"], out[f"whole_step_{op}_cpu"]
        out[f"{op}_ratio_wall"], out[f"{op}_ratio_cpu"] = a / b, ac / bc
        print(f"{op:8} {a:12.2f} {b:13.2f} {a / b:6.2f}x   ({ac:.2f} / {bc:.2f} CPU s, "
              f"{ac / bc:.2f}x)", flush=True)
    print(f"same stream ({out['bytes']} bytes); load {out['load_after']:.2f} at the end")
    return out


def cpu_rd(qualities: list[int]) -> list[dict]:
    from skimage import data

    from gencodec.codecs_ext import bits_per_pixel, find_quality_for_bpp, get_codec

    image = data.astronaut()
    codec = get_codec("diffc")
    jpeg = get_codec("jpeg")
    rows = []
    for q in qualities:
        t0 = time.perf_counter()
        stream = codec.encode(image, quality=q)
        enc_s = time.perf_counter() - t0
        row = {"steps": q, "t": codec.profile.timesteps[q - 1], "bytes": len(stream),
               "bpp": bits_per_pixel(stream, image), "encode_s": enc_s}
        for recon in ("ddim", "ancestral", "x0"):
            dec = get_codec("diffc", recon=recon)
            t0 = time.perf_counter()
            out = dec.decode(stream)
            row[f"decode_{recon}_s"] = time.perf_counter() - t0
            row[f"psnr_{recon}"] = psnr(out, image)
        j = find_quality_for_bpp(jpeg, image, row["bpp"])
        t0 = time.perf_counter()
        jpeg_out = jpeg.decode(jpeg.encode(image, j.quality))
        row.update(jpeg_quality=j.quality, jpeg_bpp=j.bpp, psnr_jpeg=psnr(jpeg_out, image),
                   jpeg_codec_s=time.perf_counter() - t0)
        rows.append(row)
        print(f"steps {q:3d} t={row['t']:4d}  {row['bpp']:.3f} bpp  enc {enc_s:6.2f} s  "
              f"dec(ddim) {row['decode_ddim_s']:5.2f} s  PSNR ddim {row['psnr_ddim']:.2f} "
              f"ancestral {row['psnr_ancestral']:.2f} x0 {row['psnr_x0']:.2f} | JPEG "
              f"q{j.quality} {j.bpp:.3f} bpp {row['psnr_jpeg']:.2f} dB  "
              f"(ddim - JPEG {row['psnr_ddim'] - row['psnr_jpeg']:+.2f} dB; encode+decode "
              f"{(enc_s + row['decode_ddim_s']) / row['jpeg_codec_s']:.0f}x JPEG's)", flush=True)
    return rows


def gpu_sd21(height: int = 512, width: int = 768, reps: int = 10) -> dict:
    import tempfile
    from pathlib import Path

    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from gencodec import rcc
    from gencodec.diffusion import load_backbone
    from gencodec.diffusion.sd import SD21_UNET_CONFIG, SD_VAE_CONFIG

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # SD 2.1 at 768 pixels (v-prediction)
        UNet2DConditionModel(**dict(SD21_UNET_CONFIG, sample_size=96)).save_pretrained(
            folder / "unet")
        AutoencoderKL(**dict(SD_VAE_CONFIG, sample_size=768)).save_pretrained(folder / "vae")
        DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                      prediction_type="v_prediction").save_pretrained(folder / "scheduler")
        (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
        bb = load_backbone(str(folder), device="cuda")
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)

        def timed(f, n):
            f()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            torch.cuda.synchronize()
            return (time.perf_counter() - t0) / n

        x0 = bb.encode_image(image)
        out = {"vae_encode_s": timed(lambda: bb.encode_image(image), 3),
               "vae_decode_s": timed(lambda: bb.decode_latent(x0), 3),
               "unet_step_s": timed(lambda: bb.eps(x0, 500), reps)}
        # one RCC step of 16-bit chunks carrying ~1 kbit (the paper's ~1 KB images)
        mu_q = x0.astype(np.float32)
        sigma = np.full_like(mu_q, 0.3)
        mu_p = mu_q + 0.3 * np.random.default_rng(1).standard_normal(mu_q.shape).astype(
            np.float32) * np.sqrt(2 * 1000 * np.log(2) / mu_q.size)
        out["rcc_kl_bits"] = rcc.gaussian_kl_bits(mu_q, sigma, mu_p, sigma)
        out["rcc_step_s"] = timed(lambda: rcc.encode_step(mu_q, sigma, mu_p, sigma, seed=0,
                                                          step=0, chunk_bits=16,
                                                          device="cuda"), 3)
        out["rcc_chunks"] = rcc.encode_step(mu_q, sigma, mu_p, sigma, seed=0, step=0,
                                            chunk_bits=16)[0].n_chunks
        out["rcc_step_per_chunk_s"] = timed(lambda: rcc.encode_step_per_chunk(
            mu_q, sigma, mu_p, sigma, seed=0, step=0, chunk_bits=16, device="cuda"), 3)
        out["rcc_step_cpu_s"] = timed(lambda: rcc.encode_step(mu_q, sigma, mu_p, sigma, seed=0,
                                                              step=0, chunk_bits=16), 1)
        for steps in (12, 54, 163):
            out[f"encode_{steps}_steps_s"] = (out["vae_encode_s"] + steps * out["unet_step_s"]
                                              + out["rcc_step_s"] * steps)
        for recon_steps in (50, 150):
            out[f"decode_{recon_steps}_evals_s"] = recon_steps * out["unet_step_s"] + \
                out["vae_decode_s"]
    print(json.dumps(out, indent=1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qualities", default="", help="steps to encode (default: 6 points)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--sd21", action="store_true", help="GPU timings of SD 2.1 (CUDA)")
    ap.add_argument("--no-rd", action="store_true", help="skip the rate-distortion sweep")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the coder-path timing")
    args = ap.parse_args()
    from gencodec.codecs_ext import get_codec

    results = {"coder_paths_astronaut_512_16_steps": coder_paths(16, args.repeats)}
    if not args.no_rd:
        n = get_codec("diffc").profile.num_steps
        qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else \
            sorted({max(1, round(n * f)) for f in (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)})
        results["cpu_gaussian_spectral_astronaut_512"] = cpu_rd(qualities)
    if args.sd21:
        results["gpu_sd21_512x768"] = gpu_sd21()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
