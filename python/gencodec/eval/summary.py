"""From the points of a results folder to what people compare: per-configuration
CompressAI-style JSON, a CSV of every point, R-D plots and BD-rate tables.

Written next to ``run.json`` (see :mod:`gencodec.eval.runner`)::

    json/<config>.json   {"name", "description", "results": {"quality", "bpp", metric..}}
    points.csv           one row per image x preprocessor x codec x quality
    rd_curves.png        one panel per metric, a curve per configuration
    bdrate.md/.json      BD-rate (%) of each preprocessor against its anchor (same codec,
                         no preprocessing), dataset x metric rows, codec columns

Curves average each quality setting over the images that have it (as CompressAI's
eval does). Metrics that could not run carry their ``unavailable (...)`` text in the
JSON, the CSV and the tables.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from gencodec.errors import InputError
from gencodec.eval.bdrate import bd_rate
from gencodec.eval.metrics import METRICS
from gencodec.eval.runner import NONE, config_name, read_points_file, slug, write_json
from gencodec.imageio import atomic_output

TIMES = ("encoding_time", "decoding_time")
INCOMPLETE = ("incomplete run: some settings are means over fewer images than others "
              "(rerun gencodec eval with the same arguments to finish)")


def load_run(out: Path) -> dict:
    path = Path(out) / "run.json"
    if not path.is_file():
        raise InputError(f"{out}: no run.json here (not a 'gencodec eval' results folder)")
    try:
        run = json.loads(path.read_text())
        for key in ("dataset", "images", "codecs", "preprocess", "qualities", "metrics",
                    "unavailable"):
            run[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: damaged or not written by 'gencodec eval' ({exc}); "
                         "rerun gencodec eval into this folder to rewrite it") from None
    return run


def available_metrics(run: dict) -> list[str]:
    return [m for m in run["metrics"] if m not in run["unavailable"]]


def load_rows(out: Path, run: dict) -> list[dict]:
    """Every point of the run's settings, one dict per image x config x quality."""
    rows = []
    for pre in run["preprocess"]:
        identity = run.get("preprocess_ids", {}).get(pre, pre)
        for codec in run["codecs"]:
            wanted = set(run["qualities"][codec])
            for im in run["images"]:
                meta = read_points_file(
                    Path(out, "points", slug(pre), codec, f"{im['name']}.json"), im,
                    identity, run.get("codec_ids", {}).get(codec))
                if meta is None:  # not done yet, damaged, or from another file or crop
                    continue
                for p in meta["points"]:
                    if p["quality"] in wanted:
                        rows.append({"dataset": run["dataset"], "image": im["name"],
                                     "preprocess": pre, "codec": codec,
                                     "width": meta["width"], "height": meta["height"],
                                     "preprocess_time": meta["preprocess_time"], **p})
    return rows


def curves(rows: list[dict], run: dict) -> dict[tuple[str, str], dict[str, list]]:
    """(preprocess, codec) -> {"quality": [...], "bpp": [...], metric: [...], ...}, the
    mean over images at each quality, ordered by rate."""
    columns = ["bpp", "bpp_stream", *available_metrics(run), *TIMES]
    out = {}
    for pre in run["preprocess"]:
        for codec in run["codecs"]:
            mine = [r for r in rows if r["preprocess"] == pre and r["codec"] == codec]
            qs = [q for q in run["qualities"][codec] if any(r["quality"] == q for r in mine)]
            if not qs:
                continue
            at = {q: [r for r in mine if r["quality"] == q] for q in qs}
            curve = {"quality": qs, "images": [len(at[q]) for q in qs]}
            for col in columns:
                curve[col] = [float(np.mean([r[col] for r in at[q]])) for q in qs]
            order = np.argsort(curve["bpp"])
            out[(pre, codec)] = {k: [v[i] for i in order] for k, v in curve.items()}
    return out


def write_compressai_json(out: Path, run: dict, table: dict) -> list[Path]:
    paths = []
    for (pre, codec), curve in table.items():
        name = config_name(pre, codec)
        results = dict(curve)
        results.update({m: run["unavailable"][m] for m in run["metrics"]
                        if m in run["unavailable"]})
        desc = (f"{codec} ({run['codec_backends'].get(codec, '')})"
                + ("" if pre == NONE else f" after {pre} preprocessing")
                + f", mean over {max(curve['images'])} {run['dataset']} image(s)")
        path = Path(out, "json", f"{slug(name)}.json")
        write_json(path, {"name": name, "description": desc, "results": results})
        paths.append(path)
    # json/ holds this run's configurations only (an older gencodec left others here)
    for stale in set(Path(out, "json").glob("*.json")) - set(paths):
        stale.unlink()
    return paths


def write_csv(out: Path, run: dict, rows: list[dict]) -> Path:
    fields = ["dataset", "image", "preprocess", "codec", "quality", "width", "height",
              "bytes", "bpp", "bpp_stream", *run["metrics"], "preprocess_time", *TIMES]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**{m: run["unavailable"][m] for m in run["unavailable"]}, **r})
    path = Path(out, "points.csv")
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(buf.getvalue())
    return path


def plot_curves(out: Path, run: dict, table: dict) -> Path | None:
    """One panel per available metric: quality against bpp, a line per configuration
    (colour = codec, dashed = preprocessed)."""
    metrics = available_metrics(run)
    if not table or not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), dpi=100,
                             squeeze=False)
    colours = {c: f"C{i}" for i, c in enumerate(run["codecs"])}
    styles = {p: ("-", "--", ":", "-.")[i % 4] for i, p in enumerate(run["preprocess"])}
    for ax, metric in zip(axes.flat, metrics):
        for (pre, codec), curve in table.items():
            ax.plot(curve["bpp"], curve[metric], marker="o", ms=3, linestyle=styles[pre],
                    color=colours[codec], label=config_name(pre, codec))
        better = "higher" if METRICS[metric].higher_is_better else "lower"
        ax.set_title(f"{metric} ({better} is better)")
        ax.set_xlabel("bits per pixel")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Rate-distortion-perception curves, {run['dataset']} "
                 f"({len(run['images'])} images)")
    fig.tight_layout()
    path = Path(out, "rd_curves.png")
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def bd_table(run: dict, table: dict, method: str = "akima") -> dict:
    """BD-rate of every preprocessed configuration against the same codec with no
    preprocessing, for every metric: rows (dataset, metric), columns (codec, test)."""
    tests = [p for p in run["preprocess"] if p != NONE]
    columns = [{"codec": c, "preprocess": p} for c in run["codecs"] for p in tests]
    rows = []
    for metric in run["metrics"]:
        cells = []
        for col in columns:
            anchor, test = table.get((NONE, col["codec"])), table.get((col["preprocess"],
                                                                       col["codec"]))
            if metric in run["unavailable"]:
                cell = {"bd_rate": None, "note": run["unavailable"][metric]}
            elif NONE not in run["preprocess"]:
                cell = {"bd_rate": None, "note": "no anchor: 'none' is not in --preprocess"}
            elif anchor is None or test is None:
                cell = {"bd_rate": None, "note": "no points yet"}
            else:
                cell = bd_rate(anchor["bpp"], anchor[metric], test["bpp"], test[metric],
                               higher_is_better=METRICS[metric].higher_is_better,
                               method=method).as_dict()
                if set(anchor["images"] + test["images"]) != {len(run["images"])}:
                    cell["note"] = "; ".join(filter(None, [cell["note"], INCOMPLETE]))
            cells.append(cell)
        rows.append({"dataset": run["dataset"], "metric": metric, "cells": cells})
    return {"anchor": NONE, "method": method, "rate": "bpp of the codec bitstream",
            "sign": "negative = fewer bits for the same quality",
            "columns": columns, "rows": rows}


def bd_markdown(bd: dict) -> str:
    """The BD-rate table in Markdown, notes as numbered footnotes under it."""
    if not bd["columns"]:
        return "_No preprocessed configuration to compare with its anchor._\n"
    head = ["Dataset", "Metric"] + [f"{c['codec'].upper()} {c['preprocess']}"
                                    for c in bd["columns"]]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|---|" + "---:|" * len(bd["columns"])]
    notes: list[str] = []
    last = None
    for row in bd["rows"]:
        cells = []
        for cell in row["cells"]:
            if cell["note"].startswith("unavailable"):
                cells.append(cell["note"])
                continue
            text = "n/a" if cell["bd_rate"] is None else f"{cell['bd_rate']:+.2f}"
            if cell["note"]:
                if cell["note"] not in notes:
                    notes.append(cell["note"])
                text += f" [{notes.index(cell['note']) + 1}]"
            cells.append(text)
        dataset = "" if row["dataset"] == last else row["dataset"]
        last = row["dataset"]
        lines.append("| " + " | ".join([dataset, row["metric"], *cells]) + " |")
    caption = (f"BD-rate (%) against the same codec without preprocessing "
               f"({bd['method']} interpolation, rate = {bd['rate']}); "
               f"{bd['sign']}.")
    foot = [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join([caption, "", *lines, "", *foot]).rstrip() + "\n"


def summarize(out: Path, method: str = "akima") -> dict:
    """Write every summary of a results folder; returns their paths and the table."""
    out = Path(out)
    run = load_run(out)
    rows = load_rows(out, run)
    table = curves(rows, run)
    bd = bd_table(run, table, method)
    md = bd_markdown(bd)
    write_json(out / "bdrate.json", bd)
    with atomic_output(out / "bdrate.md", force=True) as tmp:
        tmp.write_text(md)
    expected = len(run["images"]) * len(run["preprocess"]) * sum(
        len(run["qualities"][c]) for c in run["codecs"])
    return {"run": run, "rows": rows, "missing": expected - len(rows), "expected": expected,
            "curves": table, "bd": bd, "bd_markdown": md,
            "json": write_compressai_json(out, run, table), "csv": write_csv(out, run, rows),
            "plot": plot_curves(out, run, table)}
