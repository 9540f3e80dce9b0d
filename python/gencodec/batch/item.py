"""The item function: one input -> one output, idempotent, the same under every executor.

:meth:`Worker.run` loads the image (``gencodec.imageio.load_image``), runs the optional
preprocessor (:func:`gencodec.filters.load_preprocessor`), encodes with the codec at a
quality or at a target rate (:func:`gencodec.codecs_ext.find_quality_for_bpp`),
optionally decodes and scores the result (:class:`gencodec.eval.metrics.MetricSuite`),
and writes two files, each to a temporary name renamed when complete
(:func:`gencodec.imageio.atomic_output`):

1. the sidecar ``OUTPUT.gencodec.json``: the settings, model fingerprints, the sha256
   of the input and of the output, size, rate, quality used, metrics, timings and the
   gencodec version;
2. the output itself.

The sidecar goes first, so a worker killed between the two leaves a sidecar whose
output is missing: the item is simply redone. An item whose output and sidecar match
its settings, its input's sha256 and the output's own sha256 is skipped, so a rerun
resumes. An existing output that does not match needs ``force``.

A :class:`Worker` keeps what is slow to build -- preprocessing models, codecs (a
generative codec's model), metric suites -- between items, so a worker process loads a
model once and serves many items.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from gencodec import __version__
from gencodec.batch.manifest import NONE, Item, Settings
from gencodec.errors import GencodecError, OutputExistsError

SIDECAR_SUFFIX = ".gencodec.json"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclasses.dataclass
class ItemResult:
    """What became of an item. ``retryable``: it failed for a reason that may pass on
    another try (a crash, an unexpected exception), not because its input or settings
    are bad (a :class:`GencodecError`, which would fail again)."""

    index: int
    input: str
    output: str
    status: str
    error: str = ""
    retryable: bool = False
    bytes_in: int = 0
    bytes_out: int = 0
    bpp: float | None = None
    seconds: float = 0.0
    attempts: int = 1

    def try_again(self, retries: int) -> bool:
        """Whether the item gets another try: a retryable failure after at most
        ``retries`` tries beyond the first (``attempts`` counts those made)."""
        return self.status == FAILED and self.retryable and self.attempts <= retries


def sidecar_path(output: str | Path) -> Path:
    return Path(f"{output}{SIDECAR_SUFFIX}")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_record(item: Item) -> dict:
    """Everything the output's bytes depend on besides the input, as JSON types: a
    sidecar whose ``settings`` differ means the output must be made again."""
    s = item.settings
    record = {"codec": s.codec, "options": dict(s.options), "model": s.model,
              "model_id": item.model_id,
              "quality": s.quality, "bpp": s.bpp, "container": s.container,
              "preprocess": s.preprocess, "preprocess_id": item.preprocess_id,
              "runner": dict(s.runner) if s.preprocess != NONE else {},
              "metrics": list(s.metrics)}
    return json.loads(json.dumps(record))


#: The temporary names :func:`gencodec.imageio.atomic_output` makes for ``path``:
#: ``tempfile.mkstemp(prefix=".STEM[:40].", suffix=".partSUFFIX[:16]")``.
def _temporary_pattern(path: Path) -> re.Pattern:
    return re.compile(re.escape(f".{path.stem[:40]}.") + r"[a-z0-9_]{8}"
                      + re.escape(f".part{path.suffix[:16]}"))


def remove_temporaries(item: Item) -> int:
    """Remove temporary files a killed worker left for this item's output and sidecar
    (call only while no worker works on the item); returns how many."""
    removed = 0
    for path in (Path(item.output), sidecar_path(item.output)):
        pattern = _temporary_pattern(path)
        try:
            names = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
        except OSError:
            continue
        for p in names:
            try:
                p.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def check_made(item: Item) -> tuple[dict | None, str]:
    """``(sidecar, "")`` if the item's output is complete and was made from the same
    input with the same settings; else ``(None, why not)``."""
    out = Path(item.output)
    try:
        doc = json.loads(sidecar_path(out).read_text())
        if not isinstance(doc, dict):
            raise ValueError
    except (OSError, ValueError):
        return None, "has no gencodec batch sidecar"
    try:
        if doc.get("settings") != settings_record(item):
            return None, "was made with other settings"
        if not out.is_file() or doc.get("output_sha256") != sha256_file(out):
            return None, "is not the file its sidecar describes"
        if doc.get("input_sha256") != sha256_file(item.input):
            return None, f"was made from another version of {item.input}"
    except OSError as exc:
        return None, f"cannot be checked: {exc.strerror or exc}"
    return doc, ""


def up_to_date(item: Item) -> dict | None:
    """The item's sidecar if its output is up to date (see :func:`check_made`)."""
    return check_made(item)[0]


def outcome(item: Item, status: str, doc: dict) -> ItemResult:
    """The result of an item made (``done``) or found up to date (``skipped``), from
    its sidecar."""
    return ItemResult(item.index, item.input, item.output, status, bpp=doc["bpp"],
                      bytes_in=doc["bytes_in"], bytes_out=doc["bytes_out"])


class Worker:
    """Runs items, keeping models, codecs and metric suites between them."""

    def __init__(self):
        self._preprocessors: dict[tuple, object] = {}
        self._codecs: dict[tuple, object] = {}
        self._suites: dict[tuple, object] = {}

    # -- what is slow to build, built once per worker ------------------------------------
    def preprocessor(self, item: Item):
        s = item.settings
        key = (s.preprocess, item.preprocess_id, s.runner)  # retrained weights: new key
        if key not in self._preprocessors:
            from gencodec.filters import load_preprocessor
            from gencodec.filters.classic import is_classic

            runner = {} if is_classic(s.preprocess) else dict(s.runner)
            self._preprocessors[key] = load_preprocessor(s.preprocess, **runner)
        return self._preprocessors[key]

    def codec(self, settings: Settings):
        key = (settings.codec, settings.options, settings.model)
        if key not in self._codecs:
            from gencodec.codecs_ext import get_codec

            self._codecs[key] = get_codec(settings.codec, **settings.codec_options())
        return self._codecs[key]

    def suite(self, metrics: tuple[str, ...]):
        if metrics not in self._suites:
            from gencodec.eval.metrics import MetricSuite

            self._suites[metrics] = MetricSuite(list(metrics))
        return self._suites[metrics]

    # -- the item ----------------------------------------------------------------------
    def run(self, item: Item) -> ItemResult:
        """Make (or skip) one item; every failure becomes a ``failed`` result."""
        t0 = time.perf_counter()
        result = ItemResult(item.index, item.input, item.output, FAILED)
        try:
            doc, why = check_made(item)
            result = outcome(item, SKIPPED, doc) if doc is not None else \
                outcome(item, DONE, self._make(item, why))
        except GencodecError as exc:  # bad input or settings: the same again on a retry
            result.error = str(exc)
        except MemoryError:
            result.error, result.retryable = f"{item.input}: out of memory", True
        except Exception as exc:  # noqa: BLE001 - anything else fails this item only
            result.error = f"{item.input}: {type(exc).__name__}: {exc}"
            result.retryable = True
        result.seconds = time.perf_counter() - t0
        return result

    def _make(self, item: Item, why: str = "") -> dict:
        from gencodec.codecs_ext import bits_per_pixel, find_quality_for_bpp
        from gencodec.imageio import check_output, load_image, write_bytes_atomic

        s = item.settings
        out = Path(item.output)
        if out.exists() and not item.force:  # not ours, or made from other things
            raise OutputExistsError(f"{out}: exists and {why} (use --force to make it "
                                    "again)")
        out.parent.mkdir(parents=True, exist_ok=True)
        check_output(out, item.force, inputs=[item.input])
        timings = {}
        t = time.perf_counter()
        image = load_image(item.input)
        input_sha = sha256_file(item.input)
        timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        source = image
        if s.preprocess != NONE:
            source = np.asarray(self.preprocessor(item)(image))
            if source.shape != image.shape or source.dtype != np.uint8:
                raise GencodecError(f"preprocessor {s.preprocess!r} returned {source.shape} "
                                    f"{source.dtype} for a {image.shape} uint8 image")
        timings["preprocess"] = time.perf_counter() - t

        t = time.perf_counter()
        codec = self.codec(s)
        reachable = True
        if s.bpp is not None:
            hit = find_quality_for_bpp(codec, source, s.bpp, header=s.container)
            stream, quality, reachable = hit.data, hit.quality, hit.reachable
        else:
            quality = codec.quality.check(codec.quality.default if s.quality is None
                                          else s.quality)
            stream = codec.encode(source, quality)
        data = stream if s.container else codec.payload(stream)
        timings["encode"] = time.perf_counter() - t

        metrics = {}
        if s.metrics:
            t = time.perf_counter()
            suite = self.suite(s.metrics)
            metrics = {**suite(image, codec.decode(stream)), **suite.unavailable}
            timings["metrics"] = time.perf_counter() - t

        h, w = image.shape[:2]
        doc = {"gencodec_version": __version__, "input": item.input, "output": item.output,
               "settings": settings_record(item),
               "model_fingerprint": {"preprocess": item.preprocess_id,
                                     "codec": codec.fingerprint.hex()},
               "input_sha256": input_sha,
               "output_sha256": hashlib.sha256(data).hexdigest(),
               "width": w, "height": h, "quality": quality,
               "bytes_in": Path(item.input).stat().st_size, "bytes_out": len(data),
               "bpp": bits_per_pixel(data, image), "bpp_reachable": reachable,
               "metrics": metrics, "timings": timings}
        # the sidecar first (see the module docstring); it is ours, so always replaced
        write_bytes_atomic(sidecar_path(out), (json.dumps(doc, indent=1) + "\n").encode(),
                           force=True)
        write_bytes_atomic(out, data, force=item.force)
        return doc


def run_item(item: Item) -> ItemResult:
    """One item on its own, in this process (what every executor does per item)."""
    return Worker().run(item)
