#!/usr/bin/env python3
"""OSDiff encode and decode times at 512x768 (the paper's Table I size).

CPU: a small OSDiff (random weights: VAE 8x with widths 32-64, two-level UNet of width
64, latent codec N = M = 64), or the model folder given by ``--model`` (its lowest rate
model), on astronaut padded to 512x768, end to end through the codec (container,
entropy coding, float64 entropy parameters), against JPEG (quality 75) measured in the
same run: median seconds and ratios.

GPU (only when CUDA is available): SD 2.1-architecture UNet and VAE with random weights
in float16 (timing does not depend on the weights) and the public sizes of the latent
codec and control branch: encode (VAE encoder + G_a + hyperprior + ANS coding) and
decode (ANS decoding + context model + G_s + one UNet/control step + VAE decoder).
Paper: 0.101 s encode, 0.060 s decode on an RTX 4090.

    python benchmarks/osdiff.py [--repeats 3] [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def photo_512x768() -> np.ndarray:
    from skimage import data

    a = data.astronaut()  # 512x512
    return np.ascontiguousarray(np.pad(a, ((0, 0), (0, 256), (0, 0)), mode="reflect"))


def median_seconds(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def small_model_dir(folder: Path) -> Path:
    import diffusers

    from gencodec.osdiff.model import OSDiff, OSDiffConfig

    torch.manual_seed(0)
    diffusers.UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
        attention_head_dim=4, use_linear_projection=True).save_pretrained(folder / "unet")
    diffusers.AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1,
        norm_num_groups=16).save_pretrained(folder / "vae")
    diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                            beta_end=0.012).save_pretrained(folder / "scheduler")
    cfg = OSDiffConfig(enc_mid=32, n=64, m=64, slices=(4, 4, 8, 16, 32),
                       context_width=(64, 32), control_ratio=0.5, control_head_channels=16)
    model = OSDiff.from_backbone(folder, cfg)
    model.update_entropy_tables()
    model.save_rate_model(folder / "osdiff" / "q1")
    return folder


def cpu_rows(repeats: int, model: str | None = None) -> dict:
    from gencodec.codecs_ext import get_codec

    image = photo_512x768()
    with tempfile.TemporaryDirectory() as tmp:
        folder = model or str(small_model_dir(Path(tmp)))
        osd = get_codec("osdiff", model=folder)
        q = int(osd.quality.lo)
        jpeg = get_codec("jpeg")
        stream, jstream = osd.encode(image, q), jpeg.encode(image, 75)
        r = {"model": model or "small random (see the docstring)",
             "osdiff_encode_s": median_seconds(lambda: osd.encode(image, q), repeats),
             "osdiff_decode_s": median_seconds(lambda: osd.decode(stream), repeats),
             "jpeg_encode_s": median_seconds(lambda: jpeg.encode(image, 75), repeats),
             "jpeg_decode_s": median_seconds(lambda: jpeg.decode(jstream), repeats),
             "osdiff_bytes": len(stream)}
    r["encode_ratio_vs_jpeg"] = r["osdiff_encode_s"] / r["jpeg_encode_s"]
    r["decode_ratio_vs_jpeg"] = r["osdiff_decode_s"] / r["jpeg_decode_s"]
    return r


def gpu_rows(repeats: int) -> dict:
    import diffusers

    from gencodec.diffusion.sd import SD21_UNET_CONFIG, SD_VAE_CONFIG
    from gencodec.osdiff.model import OSDiff, OSDiffConfig

    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**SD21_UNET_CONFIG).half()
    vae = diffusers.AutoencoderKL(**SD_VAE_CONFIG).half()
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                    beta_end=0.012)
    model = OSDiff(OSDiffConfig(), vae, unet, sched.alphas_cumprod.numpy()).cuda().eval()
    model.control.half()
    model.latent_codec.double()
    model.update_entropy_tables()
    x = torch.from_numpy(photo_512x768().transpose(2, 0, 1).copy())[None].cuda().float() / 255
    words = model.compress(x)
    sync = torch.cuda.synchronize
    return {"gpu": torch.cuda.get_device_name(),
            "sd21_fp16_encode_s": median_seconds(lambda: model.compress(x), repeats, sync),
            "sd21_fp16_decode_s": median_seconds(lambda: model.decompress(words, (512, 768)),
                                                 repeats, sync),
            "paper_rtx4090_encode_s": 0.101, "paper_rtx4090_decode_s": 0.060}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", metavar="DIR",
                    help="time this OSDiff model folder on CPU (default: a small random one)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rows = {"cpu": cpu_rows(args.repeats, args.model)}
    rows["gpu"] = gpu_rows(args.repeats) if torch.cuda.is_available() else \
        "skipped: no CUDA device"
    print(json.dumps(rows, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
