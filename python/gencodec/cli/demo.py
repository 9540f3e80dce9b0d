"""``gencodec demo``: the main job on the embedded defaults.

Until the embedded preprocessing model ships, the demo compares the stock codecs on a
bundled photo (scikit-image's astronaut, public domain): a bpp / PSNR table on stdout,
``codec_comparison.json`` and a rate-distortion plot ``codec_comparison.png``."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from gencodec.codecs_ext import IMAGE_CODECS, bits_per_pixel, get_codec
from gencodec.errors import InputError
from gencodec.eval.metrics import psnr
from gencodec.eval.runner import DEFAULT_QUALITIES
from gencodec.imageio import atomic_output, write_bytes_atomic


def register(sub) -> None:
    p = sub.add_parser("demo", help="compare the stock codecs on a bundled photo",
                       description="Encode a bundled photo with every image codec at five "
                                   "settings, print the rate (bits per pixel of the whole "
                                   "stream) and PSNR (dB), and plot the R-D curves.")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)


def bundled_photo():
    try:
        from skimage import data
    except ImportError:
        raise InputError("the demo photo comes with scikit-image: pip install "
                         "'gencodec[test]'") from None
    return data.astronaut()


def compare(image) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {}
    jobs = [(name, q) for name in IMAGE_CODECS for q in DEFAULT_QUALITIES[name]]
    codecs = {name: get_codec(name) for name in IMAGE_CODECS}
    for name, q in tqdm(jobs, desc="encoding", unit="stream"):
        codec = codecs[name]
        data = codec.encode(image, q)
        rec = codec.decode(data)
        results.setdefault(name, []).append(
            {codec.quality.name: q, "bpp": bits_per_pixel(data, image), "psnr": psnr(image, rec),
             "bytes": len(data)})
    return results


def plot(results: dict[str, list[dict]], codecs: dict, path: Path,
         title: str = "Stock codecs on astronaut (512x512)") -> None:
    """Rate-distortion curves, one per codec, each point labelled with its setting;
    the legend (below the axes) names the back end that made each curve."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=120)
    for name, points in results.items():
        qname = next(k for k in points[0] if k not in ("bpp", "psnr", "bytes"))
        xs, ys = [p["bpp"] for p in points], [p["psnr"] for p in points]
        label = textwrap.fill(f"{name}: {codecs[name]}", 70, subsequent_indent="    ")
        (line,) = ax.plot(xs, ys, "o-", label=label)
        for p, x, y in zip(points, xs, ys):
            ax.annotate(f"{p[qname]:g}", (x, y), textcoords="offset points", xytext=(4, -9),
                        fontsize=6, color=line.get_color())
    ax.set_xlabel("bits per pixel (whole stream, container header included)")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title(f"{title}\n(higher and further left is better; point labels: quality setting)",
                 fontsize=10)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1,
              frameon=False)
    fig.tight_layout()
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def run(args) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder (--out names the output folder)")
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "codec_comparison.json", out / "codec_comparison.png"
    for p in (json_path, png_path):
        if p.exists() and not args.force:
            raise InputError(f"{p}: exists (use --force to overwrite)")
    image = bundled_photo()
    results = compare(image)
    backends = {name: get_codec(name).backend() for name in results}
    print(f"\n{'codec':<6} {'setting':>10} {'bpp':>8} {'PSNR dB':>8}")
    for name, points in results.items():
        qname = get_codec(name).quality.name
        for p in points:
            print(f"{name:<6} {qname + '=' + str(p[qname]):>10} {p['bpp']:8.4f} {p['psnr']:8.2f}")
    write_bytes_atomic(json_path, json.dumps(
        {"image": "astronaut (scikit-image), 512x512", "backends": backends, "results": results},
        indent=2).encode(), force=True)
    h, w = image.shape[:2]
    plot(results, backends, png_path, title=f"Stock codecs on astronaut ({w}x{h})")
    print(f"\nwrote {json_path} and {png_path}")
    return 0
