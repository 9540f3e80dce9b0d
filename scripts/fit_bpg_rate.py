"""Fit the diff-BPG rate model to real x265-intra bitstreams (our ``bpg`` codec).

For random 256x256 patches of the training photos and a range of QPs, this script

1. encodes each patch with ``gencodec.codecs_ext.get_codec("bpg")`` and records the
   payload size in bits (the codec's own stream, container header excluded), cached
   in ``--cache`` so refits do not re-encode;
2. runs the surrogate's intra coder on the same patch at the same QP and keeps, per
   channel and coefficient position, the histogram of its rounded coefficients;
3. fits :class:`BpgRateModel` (Adam, full batch) so that the estimated bits match the
   real ones: loss = mean over (patch, QP) of (log2 estimate - log2 real)^2;
4. saves the model (config.json + rate.safetensors) and a fit report (fit.json).

Never fit on the validation photos: the benchmark (benchmarks/surrogate.py) measures on
them. Example (models/dbpg-rate/README.md lists the exact commands behind the shipped
weights; ``--init`` continues from an earlier fit):

    python scripts/fit_bpg_rate.py --photos /work/data/photos/train --patches 40 \\
        --steps 800 --out /tmp/dbpg-rate
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

#: Coefficient magnitudes kept in the histograms (larger ones are clipped; at QP 10 a
#: luma DC of an 8x8 block reaches about 1000).
MAX_LEVEL = 4095


def training_patches(folder: Path, count: int, size: int, seed: int) -> np.ndarray:
    """``count`` random ``size`` x ``size`` crops of the training photos
    (:func:`gencodec.train.patches.photo_patches`, as benchmarks/surrogate.py takes)."""
    from gencodec.train.patches import photo_patches

    if "val" in Path(folder).resolve().parts:
        raise SystemExit(f"{folder}: refusing to fit on validation photos")
    if not Path(folder).is_dir():
        raise SystemExit(f"{folder}: no such folder of training photos")
    try:
        return photo_patches(Path(folder), count, size, seed)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def real_bits(patches: np.ndarray, qps: list[int], chroma: str, cache: Path) -> np.ndarray:
    """(patches, QPs) payload bits of the bpg codec, cached by patch checksum and QP."""
    import hashlib

    from gencodec.codecs_ext import get_codec

    codec = get_codec("bpg", chroma=chroma)
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    out = np.zeros((len(patches), len(qps)))
    jobs = [(i, j) for i in range(len(patches)) for j in range(len(qps))]
    for i, j in tqdm(jobs, desc="x265 intra encodes", unit="enc"):
        key = f"{hashlib.sha256(patches[i].tobytes()).hexdigest()[:16]}-{chroma}-{qps[j]}"
        if key not in known:
            known[key] = 8 * len(codec.payload(codec.encode(patches[i], qps[j])))
        out[i, j] = known[key]
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(known))
    os.replace(tmp, cache)
    return out


def coefficient_histograms(patches: np.ndarray, qps: list[int], block: int, chroma: str,
                           batch: int) -> list[dict]:
    """Per (patch, QP): the QPs and, per channel, (position, level, count) of the
    surrogate's rounded coefficients."""
    from gencodec.codecs_ext.surrogates.bpg import BpgSurrogate
    from gencodec.codecs_ext.surrogates.bpg_rate import BpgRateModel

    surrogate = BpgSurrogate(block, chroma, rate_model=BpgRateModel(block, chroma))
    x_all = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255.0
    samples: list[dict] = [{} for _ in range(len(patches) * len(qps))]
    jobs = [(j, i) for j in range(len(qps)) for i in range(0, len(patches), batch)]
    for j, i in tqdm(jobs, desc="surrogate coefficients", unit="batch"):
        with torch.no_grad():
            _, yl, yc, qp, qpc = surrogate.code(x_all[i:i + batch], qps[j])
        for k in range(yl.shape[0]):
            channels = [yl[k], yc[k, 0], yc[k, 1]]
            hist = []
            for y in channels:
                pos = torch.arange(y[0].numel()).repeat(y.shape[0])
                lev = y.reshape(-1).round().clamp(-MAX_LEVEL, MAX_LEVEL).long()
                key = pos * (2 * MAX_LEVEL + 1) + lev + MAX_LEVEL
                uniq, count = torch.unique(key, return_counts=True)
                hist.append((uniq // (2 * MAX_LEVEL + 1), uniq % (2 * MAX_LEVEL + 1) - MAX_LEVEL,
                             count))
            samples[(i + k) * len(qps) + j] = {"qp": float(qp[k]), "qp_chroma": float(qpc[k]),
                                               "blocks": yl.shape[1], "hist": hist}
    return samples


def coding_fingerprint(patches: np.ndarray, qps: list[int], block: int, chroma: str) -> str:
    """A short hash of what the rate model would see (the surrogate's rounded
    coefficients and QPs for the first patch at the first QP), so that cached
    histograms are rebuilt whenever the surrogate's coding changes."""
    import hashlib

    from gencodec.codecs_ext.surrogates.bpg import BpgSurrogate
    from gencodec.codecs_ext.surrogates.bpg_rate import BpgRateModel

    surrogate = BpgSurrogate(block, chroma, rate_model=BpgRateModel(block, chroma))
    x = torch.from_numpy(patches[:1]).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        _, yl, yc, qp, qpc = surrogate.code(x, qps[0])
    parts = [t.double().round().numpy().astype(np.int64).tobytes() for t in (yl, yc, qp, qpc)]
    return hashlib.sha256(b"".join(parts)).hexdigest()[:12]


def estimate(model, table: dict) -> torch.Tensor:
    """Estimated bits of every sample (differentiable in the model's parameters): the
    bits of each distinct (QP, position, level) once, then counted per sample."""
    total = model.side_bits(table["blocks"], table["qp"])
    for c in range(3):
        (pos, lev, qp), (inverse, cnt, sid) = table["rows"][c]
        bits = model.coefficient_bits(lev, c, qp, position=pos)[inverse] * cnt
        total = total.index_add(0, sid, bits)
    return total


def build_table(samples: list[dict]) -> dict:
    rows = []
    for c in range(3):
        parts = [(s["hist"][c], i, s["qp" if c == 0 else "qp_chroma"])
                 for i, s in enumerate(samples)]
        pos = torch.cat([h[0] for h, _, _ in parts]).double()
        lev = torch.cat([h[1] for h, _, _ in parts]).double()
        cnt = torch.cat([h[2] for h, _, _ in parts]).double()
        sid = torch.cat([torch.full((len(h[0]),), i) for h, i, _ in parts])
        qp = torch.cat([torch.full((len(h[0]),), q, dtype=torch.float64) for h, _, q in parts])
        uniq, inverse = torch.unique(torch.stack([qp, pos, lev], 1), dim=0, return_inverse=True)
        rows.append(((uniq[:, 1].long(), uniq[:, 2], uniq[:, 0]), (inverse, cnt, sid)))
    return {"rows": rows, "qp": torch.tensor([s["qp"] for s in samples], dtype=torch.float64),
            "blocks": torch.tensor([s["blocks"] for s in samples], dtype=torch.float64)}


def fit(model, table: dict, real: torch.Tensor, steps: int, lr: float) -> list[float]:
    model.double()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    target = torch.log2(real)
    history = []
    for _ in tqdm(range(steps), desc="fitting the rate model", unit="step"):
        opt.zero_grad()
        loss = (torch.log2(estimate(model, table)) - target).square().mean()
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss))
    return history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=Path("/work/data/photos/train"))
    ap.add_argument("--patches", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--qps", type=int, nargs=3, default=[10, 51, 3], metavar=("LO", "HI", "STEP"),
                    help="QPs range(LO, HI + 1, STEP) (default 10 51 3)")
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--chroma", default="420", choices=("420", "444"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path("results/dbpg-fit-cache.json"))
    ap.add_argument("--init", type=Path, help="start from this fitted model (a refit)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the fitted model")
    args = ap.parse_args()
    from gencodec.codecs_ext.surrogates.bpg_rate import BpgRateModel

    torch.manual_seed(args.seed)
    patches = training_patches(args.photos, args.patches, args.size, args.seed)
    qps = list(range(args.qps[0], args.qps[1] + 1, args.qps[2]))
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    real = torch.from_numpy(real_bits(patches, qps, args.chroma, args.cache)).reshape(-1)
    hist_cache = args.cache.with_name(
        f"{args.cache.stem}-hist-b{args.block}-{args.chroma}-{len(patches)}x{args.size}-seed"
        f"{args.seed}-qp{'-'.join(map(str, args.qps))}-"
        f"{coding_fingerprint(patches, qps, args.block, args.chroma)}.pt")
    if hist_cache.is_file():
        table = torch.load(hist_cache, weights_only=True)
    else:
        table = build_table(coefficient_histograms(patches, qps, args.block, args.chroma,
                                                   args.batch))
        torch.save(table, hist_cache)
    model = BpgRateModel(args.block, args.chroma)
    if args.init:  # parameters the earlier model lacks keep their initial values
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(args.init / "rate.safetensors")), strict=False)
    history = fit(model, table, real, args.steps, args.lr)
    with torch.no_grad():
        est = estimate(model, table)
    err = torch.log2(est / real).abs().numpy()
    model.float().save_pretrained(args.out)
    report = {"photos": str(args.photos),
              "photo_files": sorted(p.name for p in args.photos.glob("*.png")),
              "patches": len(patches), "size": args.size,
              "qps": qps, "block": args.block, "chroma": args.chroma, "steps": args.steps,
              "lr": args.lr, "seed": args.seed, "init": str(args.init) if args.init else None,
              "final_loss": history[-1],
              "train median |log2 est/real|": float(np.median(err)),
              "train p90 |log2 est/real|": float(np.percentile(err, 90))}
    (args.out / "fit.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
