"""One Markdown page per results folder: settings, BD-rate table, the R-D plot and the
mean points of every configuration. Plain GitHub-flavoured Markdown with relative
image links, so it reads the same in a browser extension, an editor or a Git host."""

from __future__ import annotations

from pathlib import Path

from gencodec.eval.runner import config_name
from gencodec.eval.summary import TIMES, available_metrics, summarize
from gencodec.imageio import atomic_output


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def means_table(run: dict, curves: dict) -> str:
    metrics = available_metrics(run)
    head = ["configuration", "quality", "bpp", *metrics, "enc s", "dec s"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|" + "---:|" * (len(head) - 2)]
    for (pre, codec), c in curves.items():
        for i, q in enumerate(c["quality"]):
            vals = [c["bpp"][i], *(c[m][i] for m in metrics), *(c[t][i] for t in TIMES)]
            lines.append("| " + " | ".join([config_name(pre, codec), f"{q:g}",
                                            *map(_fmt, vals)]) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, method: str = "akima") -> Path:
    """Summarize ``out`` (JSON, CSV, plot, BD-rate) and write ``out/report.md``."""
    out = Path(out)
    s = summarize(out, method)
    run, curves = s["run"], s["curves"]
    images = ", ".join(im["name"] for im in run["images"])
    crop = {im["crop"] for im in run["images"]} - {None}
    parts = [
        f"# gencodec evaluation: {run['dataset']}",
        "",
        f"- **Images** ({len(run['images'])}): {images}"
        + (f" (central {'/'.join(map(str, crop))} px crops)" if crop else ""),
        "- **Codecs**: " + "; ".join(f"{c} ({run['codec_backends'].get(c, '')}), "
                                     f"settings {', '.join(f'{q:g}' for q in run['qualities'][c])}"
                                     for c in run["codecs"]),
        "- **Preprocessing**: " + ", ".join(run["preprocess"]),
        "- **Metrics**: " + ", ".join(run["metrics"]),
        "- **Rate**: bits per pixel of the codec's own bitstream (`bpp`); `bpp_stream` "
        "in the CSV adds the gencodec container header",
    ]
    if s["missing"]:
        parts += ["", f"**Incomplete**: {s['missing']} of {s['expected']} points are not in "
                      "this folder yet (an interrupted or running `gencodec eval`; rerun it "
                      "with the same arguments to finish). Means and BD-rates below cover "
                      "the points present."]
    if run["unavailable"]:
        parts += ["", "Metrics that did not run here:", ""]
        parts += [f"- `{m}`: {text}. {run['unavailable_details'].get(m, '')}"
                  for m, text in run["unavailable"].items()]
    parts += ["", "## BD-rate", "", s["bd_markdown"].rstrip()]
    if s["plot"] is not None:
        parts += ["", "## Rate-distortion-perception curves", "",
                  f"![R-D curves per metric]({s['plot'].name})"]
    parts += ["", "## Mean over images per setting", "", means_table(run, curves).rstrip(),
              "", "## Files", "",
              "`json/` CompressAI-style results per configuration, `points.csv` every "
              "image's points, `bdrate.json` / `bdrate.md` the table above, "
              "`preprocessed/` the preprocessed images, `points/` the resume state.", ""]
    path = out / "report.md"
    with atomic_output(path, force=True) as tmp:
        tmp.write_text("\n".join(parts))
    return path
