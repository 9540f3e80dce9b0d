#!/usr/bin/env python3
"""Build the photo set for rate-perception training (issue 12) from Debian packages.

Downloads five Debian packages with ``apt-get download``, verifies each archive (its
sha256 against the one apt's index lists, and ``dpkg-deb --info``/``--contents``
must read it), extracts the *photographs* named in :data:`PHOTOS` (an explicit
allow-list: the packages also hold illustrations, renders and test patterns, which
are left out), converts them to 8-bit sRGB PNG and splits them deterministically
into ``train/`` and a held-out ``val/`` set by the sha256 of their output name.

    python scripts/build_training_set.py --out /work/data/photos
    python scripts/build_training_set.py --out DIR --debs DIR   # reuse downloaded .deb files

Writes ``OUT/train/*.png``, ``OUT/val/*.png`` and ``OUT/manifest.json`` (package,
version, member path, licence, size, split and sha256 of every PNG written). The
images are never committed; this script is. ``apt-get update`` must have run once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
from gencodec.imageio import load_image, save_image, write_bytes_atomic  # noqa: E402

PACKAGES = ("libjxl-testdata", "mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers",
            "gnome-backgrounds")

# The allow-list, chosen by looking at every image in the five packages (Dec 2026).
# Photographs only: camera pictures of real scenes.
#  - libjxl-testdata: the wesaturate 500px sRGB photos (CC0; the 64px ones are too
#    small, the grayscale/alpha ones are copies of these), flower.png (the JPEG XL
#    test photo; its .jpg/.ppm/alpha variants are copies) and hdr_room.png (a
#    photographed room). Left out: pngsuite, wide-gamut colour bars and rings,
#    splines, dots, patches, raw.pixls 64px crops.
#  - mate-backgrounds: all of nature/ (photos). Left out: abstract/ (Elephants is a
#    painting-like artwork, the rest are vector art) and desktop/ (gradients, logos).
#  - ukui-wallpapers, lomiri-wallpapers, gnome-backgrounds: every image is an
#    illustration or a 3D render (ribbons, cubes, pixels, truchet tiles, Warty's
#    gradient), so none is taken; the packages are still downloaded and verified so
#    that the choice is reproducible from the same sources.
LIBJXL = "usr/share/libjxl-testdata/"
MATE = "usr/share/backgrounds/mate/nature/"
PHOTOS: dict[str, tuple[str, str]] = {
    # output name: (package, member path inside the package)
    "jxl-keong-macan": ("libjxl-testdata",
                        LIBJXL + "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png"),
    "jxl-riaphotographs": ("libjxl-testdata",
                           LIBJXL + "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png"),
    "jxl-bliznaca": ("libjxl-testdata",
                     LIBJXL + "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png"),
    "jxl-flower": ("libjxl-testdata", LIBJXL + "jxl/flower/flower.png"),
    "jxl-hdr-room": ("libjxl-testdata", LIBJXL + "jxl/hdr_room.png"),
    **{f"mate-{n.lower()}": ("mate-backgrounds", f"{MATE}{n}.jpg")
       for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
                 "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")},
}
LICENCES = {"libjxl-testdata": "see usr/share/doc/libjxl-testdata/copyright "
                               "(wesaturate photos CC0)",
            "mate-backgrounds": "GPL-2+ (usr/share/doc/mate-backgrounds/copyright)"}
MIN_VAL = 8
VAL_FRACTION = 0.45


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_of(names: list[str]) -> dict[str, str]:
    """Deterministic split: rank names by sha256(name); the first
    max(MIN_VAL, VAL_FRACTION * n) go to ``val``, the rest to ``train``."""
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    n_val = max(MIN_VAL, round(VAL_FRACTION * len(names)))
    if n_val >= len(names):
        raise SystemExit(f"error: {len(names)} photos cannot give {n_val} for validation "
                         "and some for training")
    return {n: ("val" if i < n_val else "train") for i, n in enumerate(ranked)}


def run(cmd: list[str], cwd: Path | None = None) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: {res.stderr.strip()[-500:]}")
    return res.stdout


def expected_deb(package: str) -> tuple[str, str]:
    """(version, sha256) of the candidate ``apt-get download`` fetches."""
    info = run(["apt-cache", "show", "--no-all-versions", package])
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)
    if "SHA256" not in fields:
        raise SystemExit(f"error: apt-cache lists no SHA256 for {package}; "
                         "run apt-get update first")
    return fields["Version"], fields["SHA256"]


def fetch_and_verify(package: str, debs: Path) -> tuple[Path, str, str]:
    version, sha = expected_deb(package)
    found = [p for p in debs.glob(f"{package}_*.deb") if sha256_file(p) == sha]
    if not found:
        run(["apt-get", "download", package], cwd=debs)
        found = [p for p in debs.glob(f"{package}_*.deb") if sha256_file(p) == sha]
    if not found:
        raise SystemExit(f"error: no {package}_*.deb in {debs} has the sha256 apt lists ({sha})")
    deb = found[0]
    if run(["dpkg-deb", "--field", str(deb), "Package"]).strip() != package:
        raise SystemExit(f"error: {deb} is not the package {package}")
    run(["dpkg-deb", "--contents", str(deb)])  # reads the whole data archive
    return deb, version, sha


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--debs", type=Path, help="folder for (or with) the .deb files "
                        "(default: a temporary folder)")
    parser.add_argument("--force", action="store_true", help="overwrite existing PNGs")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gencodec-debs-") as tmp:
        debs = args.debs or Path(tmp)
        debs.mkdir(parents=True, exist_ok=True)
        extracted = Path(tmp) / "root"
        sources = {}
        for package in PACKAGES:
            deb, version, sha = fetch_and_verify(package, debs)
            run(["dpkg-deb", "-x", str(deb), str(extracted)])
            sources[package] = {"version": version, "deb_sha256": sha}
            print(f"{package} {version}: verified", file=sys.stderr)

        splits = split_of(sorted(PHOTOS))
        for split in ("train", "val"):
            (args.out / split).mkdir(parents=True, exist_ok=True)
        manifest = {"sources": sources, "photos": []}
        for name in sorted(PHOTOS):
            package, member = PHOTOS[name]
            src = extracted / member
            if not src.is_file():
                raise SystemExit(f"error: {member} is missing from {package}")
            image = load_image(src)  # 8-bit sRGB RGB (16-bit scaled, ICC converted)
            dest = args.out / splits[name] / f"{name}.png"
            if not dest.exists() or args.force:
                save_image(dest, image, force=args.force)
            elif not np.array_equal(load_image(dest), image):
                raise SystemExit(f"error: {dest} exists with other pixels (use --force)")
            manifest["photos"].append({
                "name": name, "split": splits[name], "package": package, "member": member,
                "licence": LICENCES[package], "width": image.shape[1],
                "height": image.shape[0], "sha256": sha256_file(dest)})
        write_bytes_atomic(args.out / "manifest.json",
                           (json.dumps(manifest, indent=1) + "\n").encode(), force=True)
    counts = {s: sum(p["split"] == s for p in manifest["photos"]) for s in ("train", "val")}
    print(f"{args.out}: {counts['train']} train, {counts['val']} val photos", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
