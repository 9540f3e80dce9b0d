"""``gencodec diffc calibrate``: Algorithm 3 (the minimum-cost timestep schedule) over a
folder of images, written as a DiffC coding profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gencodec.diffc.profile import BUDGETS, RECON_METHODS
from gencodec.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm")


def register(sub) -> None:
    p = sub.add_parser("diffc", help="DiffC tools (calibrate a coding profile)",
                       description="Tools for the DiffC codec.")
    dsub = p.add_subparsers(dest="diffc_command", metavar="ACTION", required=True)
    c = dsub.add_parser(
        "calibrate", help="find the minimum-cost timestep schedule (Algorithm 3)",
        description="Measure D_KL(q(x_j|x_i,x_0) || p(x_j|x_i)) for all pairs of candidate "
                    "timesteps over a folder of images, find the cheapest schedule with a "
                    "shortest path, fit the PFR index model and write a coding profile "
                    "(its sha256 goes into every stream's fingerprint).")
    c.add_argument("--model", "-m", default=None, help="registry id, folder or hub id "
                   "(default: the embedded gaussian-spectral model)")
    c.add_argument("--images", required=True, help="folder of calibration images")
    c.add_argument("-o", "--output", required=True, help="profile JSON to write")
    c.add_argument("--size", type=int, default=256,
                   help="side in pixels of the centre crop each image is measured at, rounded "
                        "up to the model's block size (default 256; images must be at least "
                        "this large)")
    c.add_argument("--candidates", type=int, default=60,
                   help="number of candidate timesteps (>= 2), spaced geometrically from "
                        "T-1 down to --t-final; the run makes one model evaluation per "
                        "candidate and image (default 60)")
    c.add_argument("--t-final", type=int, default=1,
                   help="last timestep of the schedule, 0..T-2 (default 1): the x_t the "
                        "highest quality sends; lower is sharper and costs more bits")
    c.add_argument("--targets", default="paper",
                   help="reconstruction timesteps the schedule must pass through (quality "
                        "levels): comma-separated, 'paper' for 900,800,...,100,90,...,10 "
                        "(the paper's evaluation points; the default), or 'none'")
    c.add_argument("--chunk-bits", type=int, default=8,
                   help="bits k of one PFR index, 2..20: each chunk draws 2^k candidates, "
                        "so encoding time grows as 2^k (default 8)")
    c.add_argument("--padding-bits", type=float, default=2.0,
                   help="bits of margin per chunk, 0 <= padding < k - 1: a step of D_KL "
                        "bits is split into ceil(D_KL / (k - padding)) chunks; more padding "
                        "means more chunks, a closer sample of q and more bits (default 2)")
    c.add_argument("--step-bits", type=float, default=None,
                   help="per-step overhead in the cost, bits >= 0 (default 64); larger "
                        "means fewer, faster steps")
    c.add_argument("--recon", choices=RECON_METHODS, default="ddim",
                   help="reconstruction written in the profile: ddim (DiffC-F, the "
                        "default), ancestral (DiffC-A) or x0 (one-step prediction)")
    c.add_argument("--budget", choices=BUDGETS, default="adaptive",
                   help="per-step KL budgets: 'adaptive' (default: each step gets the "
                        "chunks its own D_KL needs, the count is in the stream) or 'fixed' "
                        "(the paper's mean schedule: the calibrated mean D_KL, scaled to "
                        "the image size)")
    c.add_argument("--max-images", type=int, default=24,
                   help="use at most this many images of the folder, in name order "
                        "(default 24)")
    c.add_argument("--device", default="cpu",
                   help="torch device of diffusers models: cpu, cuda, cuda:1, ... "
                        "(default cpu)")
    c.add_argument("--no-fit-index", action="store_true",
                   help="keep the default Zipf exponent instead of fitting it by encoding")
    c.add_argument("--force", "-f", action="store_true", help="overwrite the output")
    c.set_defaults(func=run_calibrate)


def _centre_crop(image: np.ndarray, side: int, name: str) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) < side:
        raise InputError(f"{name}: calibration image {w}x{h} is smaller than --size {side} "
                         "(lower --size or leave the image out)")
    r, c = (h - side) // 2, (w - side) // 2
    return image[r:r + side, c:c + side]


def _targets(spec: str) -> list[int]:
    if spec == "paper":
        return list(range(900, 99, -100)) + list(range(90, 9, -10))
    if spec == "none":
        return []
    try:
        return [int(t) for t in spec.split(",")]
    except ValueError:
        raise InputError(f"--targets {spec!r}: expected comma-separated timesteps") from None


def _check_args(args, num_timesteps: int) -> None:
    """Refuse bad options before the (long) measurement, not after it."""
    from gencodec.diffc.profile import Profile

    last = num_timesteps - 1
    checks = [(args.size >= 1, f"--size {args.size} must be >= 1"),
              (args.candidates >= 2, f"--candidates {args.candidates} must be >= 2"),
              (0 <= args.t_final < last, f"--t-final {args.t_final} must be in 0..{last - 1}"),
              (args.max_images >= 1, f"--max-images {args.max_images} must be >= 1"),
              (args.step_bits is None or args.step_bits >= 0,
               f"--step-bits {args.step_bits} must be >= 0")]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    if args.targets != "paper":  # the paper's points are snapped to the candidates
        bad = [t for t in _targets(args.targets) if not args.t_final < t < last]
        if bad:
            raise InputError(f"--targets {bad} must lie strictly between --t-final "
                             f"{args.t_final} and T-1 = {last}")
    try:
        Profile(timesteps=(last,), chunk_bits=args.chunk_bits, padding_bits=args.padding_bits)
    except InputError as exc:
        raise InputError(f"--chunk-bits {args.chunk_bits} --padding-bits "
                         f"{args.padding_bits}: {exc}") from None


def run_calibrate(args) -> int:
    from tqdm import tqdm

    from gencodec.diffc import calibrate
    from gencodec.diffc.coder import DiffC
    from gencodec.diffusion import load_backbone
    from gencodec.imageio import check_output, load_image, write_bytes_atomic

    check_output(args.output, force=args.force)
    folder = Path(args.images)
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []
    if not files:
        raise InputError(f"{folder}: no images found")
    files = files[:args.max_images]
    backbone = load_backbone(args.model, device=args.device)
    _check_args(args, backbone.num_timesteps)
    side = -(-args.size // backbone.pad_multiple) * backbone.pad_multiple
    latents = [backbone.encode_image(_centre_crop(load_image(f), side, str(f))) for f in files]
    targets = _targets(args.targets)
    cands = calibrate.candidate_timesteps(backbone.num_timesteps, args.candidates, args.t_final)
    cands = sorted(set(cands) | {t for t in targets if args.t_final < t < cands[0]},
                   reverse=True)
    # progress bars on a terminal only (tqdm's disable=None), not in redirected logs
    with tqdm(total=len(latents) * (len(cands) - 1), desc="measuring D_KL", unit="eval",
              disable=None) as bar:
        m = calibrate.measure(backbone, latents, cands, progress=bar)
    step_bits = calibrate.STEP_BITS if args.step_bits is None else args.step_bits
    profile = calibrate.optimal_profile(
        m, args.chunk_bits, args.padding_bits, step_bits, targets=targets,
        recon=args.recon, budget=args.budget, kl_dims=int(latents[0].size),
        calibration={"model": backbone.name, "size": side,
                     "image_files": [f.name for f in files]})
    if not args.no_fit_index:
        coder = DiffC(backbone, profile)
        fit = latents[:4]
        with tqdm(total=len(fit) * profile.num_steps, desc="fitting the index model",
                  unit="step", disable=None) as bar:
            indices = np.concatenate([s.indices for x0 in fit for s in coder.encode_latent(
                x0, profile.num_steps, progress=bar).steps])
        profile = profile.replace(zipf_exponent=calibrate.fit_zipf_exponent(
            indices, profile.chunk_bits))
    write_bytes_atomic(args.output, profile.to_json().encode(), force=args.force)
    print(f"{args.output}: {profile.num_steps} steps {list(profile.timesteps)}")
    print(f"  expected {profile.calibration['expected_bits']:.0f} bits per {side}x{side} image"
          f" ({profile.calibration['expected_bits'] / side ** 2:.4f} bpp at the last step), "
          f"zipf exponent {profile.exponent:.4f}")
    return 0
