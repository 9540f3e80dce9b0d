"""``gencodec demo``: the headline of the project on a bundled photo.

scikit-image's astronaut (public domain) is encoded with bpg, webp and jpeg at four
settings each (:data:`DEMO_QUALITIES`, about 0.15 to 0.9 bpp), once as it is ("plain")
and once after the preprocessing model ("preprocessed"): the embedded default
(:data:`gencodec.models.DEFAULT_PREPROCESSOR`) unless ``--model`` names another. The
work is :func:`gencodec.eval.runner.evaluate`'s, in a temporary results folder, so the
rates, metrics and BD-rates are exactly those of ``gencodec eval``: rate is the bpp of
the codec's own bitstream, every metric compares the decoded image with the original
photo, and the BD-rate (:mod:`gencodec.eval.bdrate`) is that of preprocessed + codec
against the same codec on the plain photo (negative = fewer bits for the same
quality). Metrics: PSNR, MS-SSIM and the four weight-free perceptual metrics the
project's targets are stated in, HaarPSI, VSI, FSIM and GMSD (:data:`DEMO_METRICS`).

Written into ``--out``:

* ``demo.json``: the model (folder and sha256 of its files), every point, the BD-rates;
* ``rd_curves.png``: one panel per metric, plain solid, preprocessed dashed;
* ``crops.png``: per codec, a crop of the original, of the plain codec and of the
  preprocessed photo through the same codec at about the same bpp (the preprocessed
  setting is found by bisection, :func:`gencodec.codecs_ext.find_quality_for_bpp`).

Without an installed default (and no ``--model``), or with ``--model none``, the demo
says so in one line and runs the stock comparison alone (plain curves and crops).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gencodec.codecs_ext import find_quality_for_bpp, get_codec
from gencodec.errors import GencodecError, InputError
from gencodec.imageio import atomic_output, load_image, save_image, write_bytes_atomic

#: The codecs of the demo, in the order they are shown.
DEMO_CODECS = ("bpg", "webp", "jpeg")
#: Four settings per codec, low to high quality (BD-rate needs four): on astronaut the
#: plain photo spans about 0.17-0.75 bpp (bpg), 0.24-0.75 (webp), 0.30-0.83 (jpeg).
DEMO_QUALITIES: dict[str, list[int]] = {
    "bpg": [44, 39, 34, 29],
    "webp": [5, 25, 50, 75],
    "jpeg": [10, 20, 35, 50],
}
#: PSNR, MS-SSIM and the weight-free perceptual metrics of the targets (columns of
#: gencodec eval).
DEMO_METRICS = ("psnr-rgb", "ms-ssim", "haarpsi", "vsi", "fsim", "gmsd")
LABELS = {"psnr-rgb": "PSNR dB", "ms-ssim": "MS-SSIM", "haarpsi": "HaarPSI", "vsi": "VSI",
          "fsim": "FSIM", "gmsd": "GMSD"}
#: The crop of the crops figure as fractions of the photo (top, left, side): the
#: astronaut's face and hair.
CROP = (0.04, 0.27, 0.32)
#: The crops show the plain codec at this index of DEMO_QUALITIES (a low rate, where
#: the codecs' artefacts show).
CROP_SETTING = 1
OUTPUTS = ("demo.json", "rd_curves.png", "crops.png")
PHOTO_NAME = "astronaut"
NO_MODEL = "none"


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="the headline: plain vs preprocessed bpg, webp and jpeg on a photo",
        description="Encode a bundled photo (scikit-image's astronaut) with bpg, webp and "
                    "jpeg at four settings each, plain and after the preprocessing model; "
                    "print bpp, PSNR, MS-SSIM, HaarPSI, VSI, FSIM and GMSD per point and "
                    "the BD-rate per codec, and write demo.json, rd_curves.png and crops.png "
                    "(original / plain codec / preprocessed + codec at about the same "
                    "bpp). Without an installed default model it runs the stock "
                    "comparison alone and says so.",
        epilog="example: gencodec demo --out demo-out --force   "
               "(or --model MODEL_DIR to show another preprocessing model)")
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--model", "-m", metavar="ID|DIR", default=None,
                   help="preprocessing model: a directory, registry id or hub id (default: "
                        "the embedded default model; 'none': the stock comparison alone)")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="worker processes for the encodes (default: 1, in this process: "
                        "starting workers costs about as much as the demo's two tasks "
                        "gain from them)")
    p.add_argument("--force", "-f", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=run)


def bundled_photo():
    try:
        from skimage import data
    except ImportError:
        raise InputError("the demo photo comes with scikit-image: pip install "
                         "'gencodec[test]'") from None
    return data.astronaut()


def resolve_model(spec: str | None) -> tuple[str | None, str, str]:
    """(model folder or hub id or None, its display name, a one-line note or "")."""
    from gencodec.models import DEFAULT_PREPROCESSOR, NoDefaultModel, default_preprocessor_path

    if spec == NO_MODEL:
        return None, "", ("note: --model none: running the stock comparison only (plain "
                          "bpg, webp and jpeg, no preprocessing)")
    if spec is None:
        try:
            return str(default_preprocessor_path()), DEFAULT_PREPROCESSOR, ""
        except NoDefaultModel:
            return None, "", (
                f"note: no default preprocessing model is installed ({DEFAULT_PREPROCESSOR} "
                "is not in the model registry), so this runs the stock comparison only "
                "(plain bpg, webp and jpeg, no preprocessing); pass --model DIR to show one")
    from gencodec.filters.model import check_spec

    return check_spec(spec), spec, ""


@contextlib.contextmanager
def _one_torch_thread():
    """Work in this process uses one thread, as eval's worker processes do (several
    threads per process spin against each other on a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def evaluate_photo(image: np.ndarray, model: str | None, folder: Path, jobs: int) -> dict:
    """Run gencodec eval's machinery on the photo; returns run, curves, BD-rates and
    the preprocessed photo."""
    from gencodec.eval.images import ImageSource
    from gencodec.eval.runner import NONE, evaluate, slug
    from gencodec.eval.summary import bd_table, curves, load_rows

    photo = folder / f"{PHOTO_NAME}.png"
    save_image(photo, image, force=True)
    preprocess = [NONE] + ([model] if model else [])
    run = evaluate([ImageSource(PHOTO_NAME, path=str(photo))], list(DEMO_CODECS),
                   preprocess, folder, qualities=DEMO_QUALITIES, metrics=list(DEMO_METRICS),
                   dataset=PHOTO_NAME, jobs=jobs)
    table = curves(load_rows(folder, run), run)
    preprocessed = None
    if model:  # the runner keeps it at preprocessed/<pre>/<image>.png
        preprocessed = load_image(folder / "preprocessed" / slug(model) / f"{PHOTO_NAME}.png")
    return {"run": run, "curves": table, "bd": bd_table(run, table) if model else None,
            "preprocessed": preprocessed}


def bd_by_codec(bd: dict | None) -> dict[str, dict[str, dict]]:
    """codec -> metric -> {"bd_rate", "note"} from eval's BD-rate table."""
    if bd is None:
        return {}
    out: dict[str, dict[str, dict]] = {}
    for row in bd["rows"]:
        for col, cell in zip(bd["columns"], row["cells"]):
            out.setdefault(col["codec"], {})[row["metric"]] = cell
    return out


def points(curve: dict, codec: str, qname: str) -> list[dict]:
    """The points of one curve in the order of :data:`DEMO_QUALITIES` (low to high
    quality), as the JSON and the table show them."""
    keys = ["bpp", "bpp_stream", *DEMO_METRICS]
    at = {q: i for i, q in enumerate(curve["quality"])}
    return [{qname: q, **{k: curve[k][at[q]] for k in keys}}
            for q in DEMO_QUALITIES[codec] if q in at]


def _fmt(value: float, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2f}" if metric == "psnr-rgb" else f"{value:.4f}"


def print_table(results: dict, bd: dict, model: str | None) -> None:
    head = f"{'codec':<6} {'setting':>10} {'input':<13} {'bpp':>7}" + "".join(
        f" {LABELS[m]:>8}" for m in DEMO_METRICS)
    print("\n" + head)
    for codec, pair in results.items():
        qname = get_codec(codec).quality.name
        for i, plain in enumerate(pair["plain"]):
            rows = [("plain", plain)]
            if pair.get("preprocessed"):
                rows.append(("preprocessed", pair["preprocessed"][i]))
            for kind, p in rows:
                setting = f"{qname}={p[qname]}"
                print(f"{codec:<6} {setting:>10} {kind:<13} {p['bpp']:7.4f}" + "".join(
                    f" {_fmt(p[m], m):>8}" for m in DEMO_METRICS))
    if not model:
        return
    print("\nBD-rate (%) of preprocessed + codec against the plain codec "
          "(negative = fewer bits for the same quality):")
    print(f"{'codec':<6}" + "".join(f" {LABELS[m]:>8}" for m in DEMO_METRICS))
    notes = []
    for codec in results:
        cells = []
        for m in DEMO_METRICS:
            cell = bd[codec][m]
            text = "n/a" if cell["bd_rate"] is None else f"{cell['bd_rate']:+.2f}"
            if cell["note"]:
                if cell["note"] not in notes:
                    notes.append(cell["note"])
                text += f"[{notes.index(cell['note']) + 1}]"
            cells.append(f" {text:>8}")
        print(f"{codec:<6}" + "".join(cells))
    for i, note in enumerate(notes, 1):
        print(f"  [{i}] {note}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_rd(results: dict, bd: dict, title: str, path: Path) -> None:
    """One panel per metric: a colour per codec, plain solid, preprocessed dashed (its
    legend entry carries the BD-rate on that metric)."""
    from gencodec.eval.metrics import METRICS

    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), dpi=100, layout="constrained")
    for ax, metric in zip(axes.flat, DEMO_METRICS):
        for i, (codec, pair) in enumerate(results.items()):
            for kind, style in (("plain", "-"), ("preprocessed", "--")):
                pts = pair.get(kind)
                if not pts:
                    continue
                label = codec
                if kind == "preprocessed":
                    cell = bd[codec][metric]
                    rate = "n/a" if cell["bd_rate"] is None else f"{cell['bd_rate']:+.1f}%"
                    label = f"{codec} + preprocessing (BD-rate {rate})"
                ax.plot([p["bpp"] for p in pts], [p[metric] for p in pts], style, marker="o",
                        ms=4, color=f"C{i}", label=label)
        better = "higher" if METRICS[metric].higher_is_better else "lower"
        ax.set_title(f"{LABELS[metric]} ({better} is better)", fontsize=10)
        ax.set_xlabel("bits per pixel (codec bitstream)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=11)
    _save(fig, path)


def crop_box(shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The :data:`CROP` window of an image of this shape (the whole of a small one)."""
    h, w = shape[:2]
    side = min(h, w, max(16, round(CROP[2] * min(h, w))))
    top = min(round(CROP[0] * h), h - side)
    left = min(round(CROP[1] * w), w - side)
    return slice(top, top + side), slice(left, left + side)


def crop_pairs(image: np.ndarray, preprocessed: np.ndarray | None) -> list[dict]:
    """Per codec: the plain photo at :data:`CROP_SETTING`, and the preprocessed photo
    through the same codec at the setting whose rate comes closest to it."""
    from gencodec.eval.metrics import haarpsi, psnr

    def shown(codec, source, quality):
        data = codec.encode(source, quality)
        decoded = codec.decode(data)
        bpp = len(codec.payload(data)) * 8.0 / (image.shape[0] * image.shape[1])
        return {"quality": quality, "bpp": bpp, "psnr-rgb": psnr(image, decoded),
                "haarpsi": haarpsi(image, decoded), "image": decoded}

    pairs = []
    for name in tqdm(DEMO_CODECS, desc="crops", unit="codec", disable=None):
        codec = get_codec(name)
        plain = shown(codec, image, DEMO_QUALITIES[name][CROP_SETTING])
        pair = {"codec": name, "qname": codec.quality.name, "plain": plain}
        if preprocessed is not None:
            hit = find_quality_for_bpp(codec, preprocessed, plain["bpp"], header=False)
            pair["preprocessed"] = shown(codec, preprocessed, hit.quality)
        pairs.append(pair)
    return pairs


def plot_crops(image: np.ndarray, pairs: list[dict], model_label: str, path: Path) -> None:
    """A row per codec: original | plain codec | preprocessed + codec (same crop)."""
    plt = _pyplot()
    box = crop_box(image.shape)
    cols = 3 if any("preprocessed" in p for p in pairs) else 2
    fig, axes = plt.subplots(len(pairs), cols, figsize=(3.6 * cols, 4.0 * len(pairs)),
                             dpi=100, squeeze=False, layout="constrained")
    for row, pair in zip(axes, pairs):
        panels = [("original", image, "")]
        for kind, title in (("plain", f"plain {pair['codec']}"),
                            ("preprocessed", f"preprocessed + {pair['codec']}")):
            if kind in pair:
                p = pair[kind]
                panels.append((f"{title}, {pair['qname']}={p['quality']}", p["image"],
                               f"{p['bpp']:.3f} bpp, PSNR {p['psnr-rgb']:.2f} dB, "
                               f"HaarPSI {p['haarpsi']:.3f}"))
        for ax, (title, im, sub) in zip(row, panels):
            ax.imshow(im[box], interpolation="nearest")
            ax.set_title(f"{title}\n{sub}" if sub else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    what = (f"plain codec vs {model_label} + codec at about the same bpp" if cols == 3
            else "plain codecs (no preprocessing model)")
    fig.suptitle(f"{PHOTO_NAME}, crop: {what}\n(rates and metrics are of the whole image)",
                 fontsize=10)
    _save(fig, path)


def run(args) -> int:
    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder (--out names the output folder)")
    if args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: must be at least 1")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GencodecError(f"{out}: cannot create the output folder: "
                            f"{exc.strerror or exc}") from None
    paths = {name: out / name for name in OUTPUTS}
    for p in paths.values():
        if p.exists() and not args.force:
            raise InputError(f"{p}: exists (use --force to overwrite)")
    model, label, note = resolve_model(args.model)
    identity = None
    if model:
        from gencodec.eval.runner import preprocessor_identity

        identity = preprocessor_identity(model)  # what eval keys its results by
        _, _, digest = identity.partition("@sha256:")
        where = [model] if model != label else []
        where += [f"sha256 of its files {digest[:16]}..."] if digest else []
        print(f"preprocessing model: {label}" + (f" ({'; '.join(where)})" if where else ""))
    else:
        print(note)
    image = bundled_photo()
    h, w = image.shape[:2]
    with tempfile.TemporaryDirectory(prefix="gencodec-demo-") as tmp, _one_torch_thread():
        done = evaluate_photo(image, model, Path(tmp), args.jobs)
        pairs = crop_pairs(image, done["preprocessed"])
    results = {}
    for codec in DEMO_CODECS:
        qname = get_codec(codec).quality.name
        results[codec] = {"plain": points(done["curves"][("none", codec)], codec, qname)}
        if model:
            results[codec]["preprocessed"] = points(done["curves"][(model, codec)], codec,
                                                    qname)
    bd = bd_by_codec(done["bd"])
    print_table(results, bd, model)
    backends = done["run"]["codec_backends"]
    write_bytes_atomic(paths["demo.json"], json.dumps({
        "image": f"{PHOTO_NAME} (scikit-image), {w}x{h}",
        "model": ({"name": label, "path": model, "identity": identity} if model else None),
        "note": note, "codecs": list(DEMO_CODECS), "backends": backends,
        "qualities": DEMO_QUALITIES, "metrics": list(DEMO_METRICS),
        "rate": "bpp of the codec bitstream (bpp_stream: with the 64-byte container header)",
        "results": results, "bd_rate": bd,
        "bd_rate_sign": "negative = fewer bits for the same quality",
        "crops": [{"codec": p["codec"],
                   **{kind: {k: v for k, v in p[kind].items() if k != "image"}
                      for kind in ("plain", "preprocessed") if kind in p}} for p in pairs],
    }, indent=2, allow_nan=True).encode(), force=True)
    title = (f"{PHOTO_NAME} ({w}x{h}): plain codec (solid) vs {label} + codec (dashed)"
             if model else f"{PHOTO_NAME} ({w}x{h}): stock codecs only "
                           "(no preprocessing model)")
    plot_rd(results, bd, title, paths["rd_curves.png"])
    plot_crops(image, pairs, label, paths["crops.png"])
    print(f"\nwrote {', '.join(str(p) for p in paths.values())} "
          f"in {time.perf_counter() - start:.1f} s"
          + ("" if model else " (stock comparison only: no preprocessing model)"))
    return 0
