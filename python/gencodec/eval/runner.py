"""Rate-distortion-perception runs: every image x preprocessor x codec x quality.

For each image and preprocessor (``none``, a classic FFmpeg filter from
:mod:`gencodec.filters.classic`, or any other spec, handed to
``gencodec.filters.load_preprocessor``) the image is preprocessed once, then encoded by
each codec at each quality and decoded; every metric compares the decoded image with
the *original* image. A point records the quality setting, ``bytes`` and ``bpp`` of
the codec's own bitstream (the file a standard decoder reads: ``.jpg``, ``.webp``, the
HEVC stream), ``bpp_stream`` of the whole gencodec stream (64-byte container header
included), each metric, and the encoding and decoding wall times.

Layout of a results folder (written as the run goes, so an interrupted run resumes)::

    run.json                              the settings of the run
    preprocessed/<pre>/<image>.png|.json  preprocessed image and its time
    points/<pre>/<codec>/<image>.json     the points of one image (resume state)

A folder holds one configuration (:data:`CONFIGURATION`: images, codecs, preprocessors,
qualities, metrics, dataset name): a rerun with the same one resumes, another one is
refused, or with ``replace`` (``gencodec eval --force``) replaces the folder's results
(:data:`RESULTS`), so the summaries never mix two configurations.

Both kinds of state name the image source and the preprocessor's identity
(:func:`preprocessor_identity`: a learned model's folder by the sha256 of its files), and
points of a codec run with options (``codec_options``, e.g. an osdiff ``model`` folder)
name the codec's identity (:func:`codec_identity`, model folders by their sha256 too),
so a resumed run never reuses points of another crop or of retrained weights under the
same name.

:func:`gencodec.eval.summary.summarize` turns these into the CompressAI-style JSON,
CSV, plots and BD-rate tables. Work is spread over processes, one task per image and
preprocessor; a point already on disk with every metric of the run is not recomputed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gencodec import locking
from gencodec.codecs_ext import bits_per_pixel, get_codec
from gencodec.errors import GencodecError, InputError
from gencodec.eval.images import ImageSource
from gencodec.eval.metrics import MetricSuite
from gencodec.imageio import atomic_output, load_image, save_image

#: Five settings per codec, low to high quality (BD-rate needs at least four).
DEFAULT_QUALITIES: dict[str, list[float]] = {
    "jpeg": [15, 30, 50, 70, 90],
    "webp": [10, 30, 50, 70, 90],
    # libheif's quality scale is steep: 75 is ~3 bpp and 92 ~5 bpp on astronaut, so
    # these settings span the same ~0.15-2.4 bpp as the other codecs.
    "heif": [15, 30, 45, 60, 70],
    "avif": [15, 30, 50, 70, 90],
    "bpg": [42, 37, 32, 27, 22],
    "x265": [42, 37, 32, 27, 22],
}
NONE = "none"
#: The settings of run.json that make a folder's results; a rerun must match them.
CONFIGURATION = ("dataset", "images", "codecs", "preprocess", "qualities", "metrics",
                 "codec_options")
#: Everything an evaluation and its summaries write in a results folder (``replace``
#: removes these, and nothing else).
RESULTS = ("run.json", "points", "preprocessed", "json", "points.csv", "rd_curves.png",
           "bdrate.json", "bdrate.md", "report.md")
#: Video codecs: they take and return TxHxWx3 frames (an image is a one-frame sequence).
SEQUENCE_CODECS = ("x265",)


def slug(spec: str) -> str:
    """A file-name-safe form of a preprocessor spec (``nlmeans:s=5`` -> ``nlmeans_s=5``)."""
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", spec).strip("_") or "_"


def config_name(preprocess: str, codec: str) -> str:
    """The name of a (preprocessor, codec) configuration: ``jpeg``, ``nlmeans+jpeg``."""
    return codec if preprocess == NONE else f"{preprocess}+{codec}"


def load_preprocessor(spec: str):
    """``none`` -> None; anything else -> :func:`gencodec.filters.load_preprocessor`
    (a classic FFmpeg filter or a learned model)."""
    if spec == NONE:
        return None
    from gencodec.filters import load_preprocessor as load_filter

    return load_filter(spec)


@dataclasses.dataclass(frozen=True)
class Task:
    """One image under one preprocessor, through every codec and quality."""

    image: ImageSource
    preprocess: str
    codecs: tuple[str, ...]
    qualities: tuple[tuple[str, tuple[float, ...]], ...]  # codec -> settings
    metrics: tuple[str, ...]
    out: str
    preprocess_id: str | None = None  # None: the spec itself (see preprocessor_identity)
    #: codec -> its constructor options, as sorted (key, value) pairs (codecs run with
    #: their defaults are not listed)
    codec_options: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    codec_ids: tuple[tuple[str, str], ...] = ()  # codec -> codec_identity, those listed

    @property
    def identity(self) -> str:
        return self.preprocess_id or self.preprocess

    def options_of(self, codec: str) -> dict[str, object]:
        return dict(dict(self.codec_options).get(codec, ()))

    def codec_id(self, codec: str) -> str | None:
        return dict(self.codec_ids).get(codec)

    def points_path(self, codec: str) -> Path:
        return Path(self.out, "points", slug(self.preprocess), codec, f"{self.image.name}.json")

    def missing(self, metrics: list[str]) -> dict[str, list[float]]:
        """codec -> the qualities whose point is not on disk with every metric."""
        todo = {}
        for codec, qs in self.qualities:
            done = {p["quality"] for p in read_points(self.points_path(codec), self.image,
                                                      self.identity, self.codec_id(codec))
                    if all(m in p for m in metrics)}
            left = [q for q in qs if q not in done]
            if left:
                todo[codec] = left
        return todo


def read_points_file(path: Path, source: dict, identity: str,
                     codec_id: str | None = None) -> dict | None:
    """A points file of ``source`` (an :class:`ImageSource` as a dict) under the
    preprocessor ``identity`` and the codec identity ``codec_id`` (None: the codec with
    its default options); None if it is missing, unreadable (cut short, edited by hand),
    or was made from another image source (another file or crop under the same name),
    another preprocessor or another codec model (a retrained model in the same folder):
    its points are then redone."""
    try:
        doc = json.loads(path.read_text())
        if doc["source"] != source or doc.get("preprocess_id") != identity \
                or doc.get("codec_id") != codec_id or not isinstance(doc["points"], list):
            return None
        return doc
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_points(path: Path, source: ImageSource, identity: str,
                codec_id: str | None = None) -> list[dict]:
    """The points in a file of ``source`` (see :func:`read_points_file`)."""
    doc = read_points_file(path, dataclasses.asdict(source), identity, codec_id)
    return doc["points"] if doc else []


def preprocessor_identity(spec: str) -> str:
    """What a preprocessor's results depend on: the spec itself for ``none``, classic
    filters and hub ids; for a model folder, the spec plus the sha256 of every file in
    it (names and contents), so retrained weights under the same name are new work."""
    from gencodec.filters.classic import is_classic

    if spec == NONE or is_classic(spec):
        return spec
    from gencodec.filters.model import check_spec

    return _folder_identity(spec, Path(check_spec(spec)).expanduser())


def codec_identity(codec: str, options: dict[str, object]) -> str:
    """What a codec's results depend on besides its name: its options, with a ``model``
    that is a local folder given by the sha256 of its files (as a preprocessor's)."""
    shown = dict(sorted(options.items()))
    model = shown.get("model")
    if isinstance(model, str):
        shown["model"] = _folder_identity(model, Path(model).expanduser())
    return f"{codec}:{json.dumps(shown, sort_keys=True)}"


def _folder_identity(spec: str, folder: Path) -> str:
    """``spec`` if ``folder`` is not a folder, else ``spec@sha256:...`` of every file in
    it (relative names and contents)."""
    if not folder.is_dir():
        return spec
    digest = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f.relative_to(folder).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"{spec}@sha256:{digest.hexdigest()}"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, allow_nan=True) + "\n")


# -- work inside a process --------------------------------------------------------------
_SUITES: dict[tuple, MetricSuite] = {}
_PREPROCESSORS: dict[str, object] = {}
_CODECS: dict[str, object] = {}  # by codec identity: a model loads once per process


def _suite(metrics: tuple[str, ...], weights_dir: str | None) -> MetricSuite:
    key = (metrics, weights_dir)
    if key not in _SUITES:
        _SUITES[key] = MetricSuite(list(metrics), weights_dir)
    return _SUITES[key]


def _preprocessed(task: Task, image: np.ndarray) -> tuple[np.ndarray, float]:
    """The preprocessed image and the seconds it took (cached under preprocessed/)."""
    if task.preprocess == NONE:
        return image, 0.0
    base = Path(task.out, "preprocessed", slug(task.preprocess), task.image.name)
    png, meta = base.with_suffix(".png"), base.with_suffix(".json")
    source = dataclasses.asdict(task.image)
    try:
        cached = json.loads(meta.read_text())
        if cached["source"] == source and cached.get("preprocess_id") == task.identity:
            return load_image(png), float(cached["seconds"])
    except (OSError, ValueError, KeyError, TypeError, InputError):
        pass  # not cached, or a damaged cache: preprocess again
    if task.identity not in _PREPROCESSORS:  # by identity: retrained weights reload
        _PREPROCESSORS[task.identity] = load_preprocessor(task.preprocess)
    t0 = time.perf_counter()
    out = np.asarray(_PREPROCESSORS[task.identity](image))
    seconds = time.perf_counter() - t0
    if out.shape != image.shape or out.dtype != np.uint8:
        raise GencodecError(f"preprocessor {task.preprocess!r} returned {out.shape} "
                            f"{out.dtype} for a {image.shape} uint8 image")
    png.parent.mkdir(parents=True, exist_ok=True)
    save_image(png, out, force=True)
    write_json(meta, {"seconds": seconds, "source": source, "preprocess_id": task.identity})
    return out, seconds


def _code(codec, image: np.ndarray, quality: float):
    """Encode + decode one image; sequence codecs (x265) get a one-frame sequence."""
    frames = codec.name in SEQUENCE_CODECS
    t0 = time.perf_counter()
    data = codec.encode(image[None] if frames else image, quality)
    t1 = time.perf_counter()
    decoded = codec.decode(data)
    t2 = time.perf_counter()
    return data, (decoded[0] if frames else decoded), t1 - t0, t2 - t1


def run_task(task: Task, weights_dir: str | None = None) -> int:
    """Compute and write the missing points of a task; returns how many were computed."""
    suite = _suite(task.metrics, weights_dir)
    todo = task.missing(suite.names)
    if not todo:
        return 0
    original = task.image.load()
    source, pre_seconds = _preprocessed(task, original)
    h, w = original.shape[:2]
    computed = 0
    for codec_name, qualities in todo.items():
        codec_id = task.codec_id(codec_name)
        key = codec_id or codec_name
        if key not in _CODECS:
            _CODECS[key] = get_codec(codec_name, **task.options_of(codec_name))
        codec = _CODECS[key]
        path = task.points_path(codec_name)
        points = {p["quality"]: p for p in read_points(path, task.image, task.identity,
                                                       codec_id)}
        for q in qualities:
            data, decoded, enc_s, dec_s = _code(codec, source, q)
            payload = codec.payload(data)
            points[q] = {"quality": q, "bytes": len(payload),
                         "bpp": bits_per_pixel(payload, original),
                         "bpp_stream": bits_per_pixel(data, original),
                         **suite(original, decoded),
                         "encoding_time": enc_s, "decoding_time": dec_s}
            computed += 1
        write_json(path, {"image": task.image.name, "source": dataclasses.asdict(task.image),
                          "preprocess": task.preprocess, "preprocess_id": task.identity,
                          "codec": codec_name,
                          **({"codec_id": codec_id} if codec_id is not None else {}),
                          "width": w, "height": h,
                          "preprocess_time": pre_seconds,
                          "points": sorted(points.values(), key=lambda p: p["quality"])})
    return computed


def _init_worker() -> None:
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    torch.set_num_threads(1)  # one process per core; no oversubscription


# -- the run ------------------------------------------------------------------------------
def build_codecs(codecs: list[str],
                 codec_options: dict[str, dict] | None = None) -> dict[str, object]:
    """codec -> the codec built with its options (``codec_options``: codec -> constructor
    options); an unknown codec or a bad option is an InputError, a codec named twice is
    built once. Built once per run in the main process: a model-backed codec hashes its
    model folder when built."""
    options = codec_options or {}
    return {codec: get_codec(codec, **options.get(codec, {}))
            for codec in dict.fromkeys(codecs)}


def parse_qualities(items: list[str] | None, codecs: list[str],
                    codec_options: dict[str, dict] | None = None,
                    built: dict[str, object] | None = None) -> dict[str, list[float]]:
    """``["jpeg=10,50,90", "bpg=40,30"]`` or ``["10,50,90"]`` (every codec) -> settings,
    defaults (:data:`DEFAULT_QUALITIES`) for codecs not named. ``codec_options``: codec
    -> constructor options (a model decides some codecs' settings); ``built``: the
    codecs already built (:func:`build_codecs`), else they are built here."""
    if not codecs:
        raise InputError("--codecs: no codec named")
    codecs = list(dict.fromkeys(codecs))  # a codec named twice is run once
    if built is None:
        built = build_codecs(codecs, codec_options)
    chosen: dict[str, list[float]] = {}
    for item in items or []:
        for part in filter(None, item.split(";")):
            name, sep, values = part.rpartition("=")
            name = name.strip()
            try:
                qs = [float(v) for v in values.split(",") if v.strip()]
            except ValueError:
                raise InputError(f"--qualities {part!r}: not a list of numbers") from None
            if not qs:
                raise InputError(f"--qualities {part!r}: no settings after the '='")
            qs = [int(v) if v.is_integer() else v for v in qs]
            for codec in ([name] if sep else codecs):
                if codec not in codecs:
                    raise InputError(f"--qualities names {codec!r}, which is not in --codecs")
                chosen[codec] = qs
    out = {}
    for codec in codecs:
        qs = chosen.get(codec) or DEFAULT_QUALITIES.get(codec) or built[codec].rd_settings()
        if not qs:
            raise InputError(f"no default qualities for {codec}: give --qualities {codec}=...")
        qr = built[codec].quality
        try:
            out[codec] = list(dict.fromkeys(qr.check(q) for q in qs))  # once each
        except InputError as exc:
            raise InputError(f"--qualities for {codec}: {exc}") from None
    return out


def exclusive(out: Path):
    """Hold the results folder for one run: a second ``gencodec eval`` into the same
    ``--out`` would delete the first one's temporary files and replace its run.json, so
    it is refused."""
    return locking.held(out / ".gencodec-eval.lock",
                        busy=f"{out}: another gencodec eval is writing to this folder; "
                             "wait for it to finish or pick another --out",
                        unwritable=f"{out}: cannot write in the results folder")


def configuration(run: dict) -> dict:
    """The settings of a run that its results depend on, as run.json stores them."""
    return json.loads(json.dumps({k: run.get(k) for k in CONFIGURATION}))


def _differences(old: dict, new: dict) -> str:
    """``"codecs jpeg -> jpeg,webp; qualities"``: what changed between two runs."""
    def short(v):
        return ",".join(map(str, v)) if isinstance(v, list) and all(
            isinstance(x, (str, int, float)) for x in v) else None

    parts = []
    for key in CONFIGURATION:
        if old.get(key) != new.get(key):
            a, b = short(old.get(key)), short(new.get(key))
            parts.append(f"{key} {a} -> {b}" if a is not None and b is not None else key)
    return "; ".join(parts)


def _previous_configuration(out: Path) -> dict | None:
    """The configuration of the run.json in ``out``, None if there is none or it is
    unreadable (a damaged folder is rewritten)."""
    try:
        run = json.loads((out / "run.json").read_text())
        return configuration(run) if isinstance(run, dict) else None
    except (OSError, ValueError):
        return None


def _remove_results(out: Path) -> None:
    """Remove what an earlier run wrote in ``out`` (:data:`RESULTS`), nothing else."""
    import shutil

    for name in RESULTS:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def evaluate(images: list[ImageSource], codecs: list[str], preprocess: list[str], out: Path,
             *, qualities: dict[str, list[float]], metrics: list[str], dataset: str,
             jobs: int | None = None, weights_dir: str | None = None,
             progress: bool = True, replace: bool = False,
             codec_options: dict[str, dict] | None = None,
             built: dict[str, object] | None = None) -> dict:
    """Run (or resume) an evaluation into ``out``; returns the settings written to
    ``run.json``. A folder holding another configuration is refused, or with
    ``replace`` cleared first (see the module docstring). Codecs, preprocessors and
    metrics named twice are run once. ``codec_options``: codec -> its constructor
    options (``{"osdiff": {"model": "./sd21"}}``), for codecs in ``codecs``; ``built``:
    those codecs already built with them (:func:`build_codecs`, as for
    :func:`parse_qualities`), else they are built here. Summaries are
    :func:`gencodec.eval.summary.summarize`'s job."""
    codecs, preprocess, metrics = (list(dict.fromkeys(v)) for v in (codecs, preprocess,
                                                                     metrics))
    codec_options = {c: dict(o) for c, o in (codec_options or {}).items() if o}
    for name in codec_options:
        if name not in codecs:
            raise InputError(f"options given for codec {name}, which is not in --codecs")
    if built is None:
        built = build_codecs(codecs, codec_options)
    for name in codecs:
        ok, why = built[name].available()
        if not ok:
            raise InputError(f"codec {name} is not available here: {why}")
    from gencodec.filters.classic import is_classic

    # fail before any work on a bad spec: classic filters are built once to check their
    # options; a learned model is only located here (preprocessor_identity raises on a
    # bad one) and each worker loads it on first use
    for spec in preprocess:
        if is_classic(spec):
            load_preprocessor(spec)
    identities = {spec: preprocessor_identity(spec) for spec in preprocess}
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        raise InputError("two images have the same name")
    suite = MetricSuite(metrics, weights_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GencodecError(f"{out}: cannot create the results folder: "
                            f"{exc.strerror or exc}") from None
    run = {"dataset": dataset, "images": [dataclasses.asdict(im) for im in images],
           "codecs": codecs, "preprocess": preprocess, "preprocess_ids": identities,
           "qualities": qualities,
           "metrics": metrics, "unavailable": suite.unavailable,
           "unavailable_details": suite.details,
           "codec_backends": {c: built[c].backend() for c in codecs}}
    codec_ids = {c: codec_identity(c, o) for c, o in codec_options.items()}
    if codec_options:  # absent otherwise: the run.json of earlier versions still match
        run.update(codec_options=codec_options, codec_ids=codec_ids)
    with exclusive(out):  # two runs into one folder would undo each other's work
        previous = _previous_configuration(out)
        if previous is not None and previous != configuration(run):
            if not replace:
                raise InputError(
                    f"{out}: holds the results of another configuration "
                    f"({_differences(previous, configuration(run))}); rerun with the "
                    "settings of run.json to resume, pick another --out, or use --force "
                    "to replace those results")
            _remove_results(out)
        write_json(out / "run.json", run)
        for stale in out.rglob(".*.part.*"):  # temporary files of a run that was killed
            stale.unlink()
        settings = tuple((c, tuple(q)) for c, q in qualities.items())
        options = tuple((c, tuple(sorted(o.items()))) for c, o in codec_options.items())
        tasks = [Task(im, pre, tuple(codecs), settings, tuple(metrics), str(out),
                      identities[pre], options, tuple(codec_ids.items()))
                 for im in images for pre in preprocess]
        pending = [t for t in tasks if t.missing(suite.names)]
        if progress and len(pending) < len(tasks):
            print(f"resuming: {len(tasks) - len(pending)} of {len(tasks)} image x "
                  f"preprocessor tasks already done in {out}")
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending) or 1))
        # on a terminal only (tqdm's disable=None): not into a redirected log
        with tqdm(total=len(pending), desc="eval", unit="task",
                  disable=None if progress else True) as bar:
            if jobs == 1:
                for task in pending:
                    _run_named(task, weights_dir)
                    bar.update()
            else:
                # spawn: torch and fork do not mix. Workers ignore Ctrl-C; the parent
                # stops them at once (finished points are on disk, written atomically).
                pool = multiprocessing.get_context("spawn").Pool(jobs,
                                                                 initializer=_init_worker)
                args = [(t, weights_dir) for t in pending]
                try:
                    for _ in pool.imap_unordered(_run_named_star, args):
                        bar.update()
                    pool.close()
                except BaseException:
                    pool.terminate()
                    raise
                finally:
                    pool.join()
    return run


def _run_named(task: Task, weights_dir: str | None) -> int:
    """:func:`run_task`, with the image and preprocessor named in its errors."""
    try:
        return run_task(task, weights_dir)
    except GencodecError as exc:
        raise GencodecError(f"{task.image.name}, {task.preprocess}: {exc}") from None


def _run_named_star(args) -> int:
    return _run_named(*args)
