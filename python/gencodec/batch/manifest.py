"""Batch job manifests: what to encode, where to, and with which settings.

Three forms give one list of :class:`Item`:

* **CSV** with a header row: ``input``, ``output`` and any per-item overrides among
  ``codec``, ``quality``, ``bpp``, ``preprocess``, ``model``, ``options`` (an empty
  cell keeps the job's setting). ``options`` holds codec options as
  ``KEY=VALUE KEY=VALUE``; ``model`` is the model of a generative codec (DiffC);
  ``preprocess`` is a preprocessing model folder, registry or hub id, a classic
  FFmpeg filter (``nlmeans:s=5``) or ``none``.
* **JSON Lines**: one object per line with the same keys (``options`` may also be an
  object, ``quality`` and ``bpp`` numbers).
* **a directory**, a glob and the job's one set of settings: each output mirrors its
  input's path relative to the directory under ``out``, with the codec's suffix
  (``.gnc`` for gencodec streams).

Relative paths in a manifest file are relative to the manifest's folder. Everything a
user can get wrong in the job itself (unknown columns, a quality out of range, an
unknown codec or preprocessor, two items writing one output, an output that is some
item's input) raises :class:`InputError` before any work starts; a missing or corrupt
*input* is not checked here: it fails its own item only.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

from gencodec.cli.options import parse_codec_options
from gencodec.errors import InputError

#: Per-item columns (CSV) or keys (JSONL) besides ``input`` and ``output``.
OVERRIDES = ("codec", "quality", "bpp", "preprocess", "model", "options")
#: The suffix of gencodec container streams (``container=True``) in directory jobs.
STREAM_SUFFIX = ".gnc"
NONE = "none"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How one item is made. ``quality`` and ``bpp`` exclude each other (neither: the
    codec's default quality). ``container``: write the gencodec stream (64-byte header
    + payload) instead of the codec's own file. ``runner``: how a learned
    preprocessor runs (:func:`gencodec.filters.make_runner` keywords)."""

    codec: str | None = None
    quality: float | None = None
    bpp: float | None = None
    preprocess: str = NONE
    model: str | None = None
    options: tuple[tuple[str, object], ...] = ()
    container: bool = False
    metrics: tuple[str, ...] = ()
    runner: tuple[tuple[str, object], ...] = ()

    def codec_options(self) -> dict[str, object]:
        """The codec's constructor keywords (``model`` included when given)."""
        return {**dict(self.options), **({"model": self.model} if self.model else {})}


@dataclasses.dataclass(frozen=True)
class Item:
    """One input to one output. ``preprocess_id`` is what the preprocessor's output
    depends on (:func:`gencodec.eval.runner.preprocessor_identity`: a model folder's
    sha256), ``model_id`` the same for a generative codec's model; both computed once
    per job in the driver."""

    index: int
    input: str
    output: str
    settings: Settings
    preprocess_id: str = NONE
    model_id: str | None = None  # the same for the codec's model (DiffC)
    force: bool = False


def number(value, what: str, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {what} {value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def _options(value, where: str) -> dict[str, object]:
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k).replace("-", "_"): v for k, v in value.items()}
    if not isinstance(value, str):
        raise InputError(f"{where}: options must be 'KEY=VALUE KEY=VALUE' or an object")
    try:
        return parse_codec_options(value.split())
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def _override(defaults: Settings, row: dict, where: str) -> Settings:
    """``defaults`` with a row's non-empty overrides applied. A row's quality replaces
    the job's bpp target and the other way round; both in one row is an error."""
    quality = number(row.get("quality"), "quality", where)
    bpp = number(row.get("bpp"), "bpp", where)
    if quality is not None and bpp is not None:
        raise InputError(f"{where}: give quality or bpp, not both")
    changes: dict[str, object] = {}
    if quality is not None:
        changes.update(quality=quality, bpp=None)
    if bpp is not None:
        changes.update(bpp=bpp, quality=None)
    for key in ("codec", "preprocess", "model"):
        value = row.get(key)
        if value is not None and str(value).strip():
            changes[key] = str(value).strip()
    options = _options(row.get("options"), where)
    if options:
        changes["options"] = tuple(sorted({**dict(defaults.options), **options}.items()))
    return dataclasses.replace(defaults, **changes)


def _rows(path: Path) -> list[tuple[str, dict]]:
    """(location, row) of each entry of a CSV or JSONL manifest."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the manifest: {exc}") from None
    rows: list[tuple[str, dict]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}:{n}: not a JSON object: {exc}") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{n}: not a JSON object")
            rows.append((f"{path}:{n}", row))
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for n, row in enumerate(reader, 2):
            if None in row:
                raise InputError(f"{path}:{n}: more cells than columns")
            if any((v or "").strip() for v in row.values()):
                rows.append((f"{path}:{n}", row))
    else:
        raise InputError(f"{path}: a manifest is a .csv or .jsonl file, or a directory")
    for where, row in rows:
        unknown = set(row) - {"input", "output", *OVERRIDES}
        if unknown:
            raise InputError(f"{where}: unknown column(s) {', '.join(sorted(unknown))}; "
                             f"known: input, output, {', '.join(OVERRIDES)}")
        for key in ("input", "output"):
            if not str(row.get(key) or "").strip():
                raise InputError(f"{where}: no {key}")
    return rows


def read_manifest(path: str | os.PathLike, defaults: Settings) -> list[tuple[str, Item]]:
    """(location, item) for every entry of a CSV or JSONL manifest, unchecked."""
    path = Path(path)
    base = path.parent
    items = []
    for where, row in _rows(path):
        settings = _override(defaults, row, where)
        items.append((where, Item(len(items), str(base / str(row["input"]).strip()),
                                  str(base / str(row["output"]).strip()), settings)))
    return items


def output_suffix(settings: Settings) -> str:
    """The file suffix of an item's output: the codec's usual one for its own file,
    :data:`STREAM_SUFFIX` for a gencodec stream."""
    from gencodec.codecs_ext import CODECS

    if settings.container or not CODECS[settings.codec].suffixes:
        return STREAM_SUFFIX
    return CODECS[settings.codec].suffixes[0]


def scan_directory(folder: str | os.PathLike, out: str | os.PathLike | None,
                   pattern: str | None, defaults: Settings) -> list[tuple[str, Item]]:
    """(location, item) for the files under ``folder`` matching ``pattern`` (default:
    every file with an image suffix Pillow knows, in sub-folders too); hidden files and
    folders are skipped. Outputs go under ``out`` at the same relative path."""
    from PIL import Image

    folder = Path(folder)
    if out is None:
        raise InputError(f"{folder}: a directory job needs --out (the output folder)")
    _check_codec(defaults, str(folder))
    suffix = output_suffix(defaults)
    image_suffixes = set(Image.registered_extensions())
    items = []
    for path in sorted(folder.glob(pattern or "**/*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if pattern is None and path.suffix.lower() not in image_suffixes:
            continue
        target = Path(out, rel).with_suffix(suffix)
        items.append((str(path), Item(len(items), str(path), str(target), defaults)))
    if not items:
        raise InputError(f"{folder}: no file matches {pattern or 'an image suffix'}")
    return items


def _check_codec(settings: Settings, where: str) -> None:
    from gencodec.codecs_ext import CODECS

    if settings.codec is None:
        raise InputError(f"{where}: no codec (give --codec, or a codec column)")
    if settings.codec not in CODECS:
        raise InputError(f"{where}: unknown codec {settings.codec!r}; available: "
                         f"{', '.join(c for c in CODECS if c != 'x265')}")
    if settings.codec == "x265":
        raise InputError(f"{where}: x265 is a video codec; use 'gencodec transcode' for video")


class _Checker:
    """Checks settings once per distinct combination: codecs are built (cheap for the
    stock ones; generative codecs, which load a model, are checked by their workers),
    preprocessors located and fingerprinted."""

    def __init__(self):
        self._codecs: dict[tuple, object] = {}
        self._identities: dict[str, str] = {}

    def codec(self, settings: Settings, where: str) -> None:
        from gencodec.codecs_ext import IMAGE_CODECS, check_target_bpp, get_codec

        _check_codec(settings, where)
        key = (settings.codec, settings.options, settings.model)
        if key not in self._codecs:
            codec = None
            if settings.codec in IMAGE_CODECS:
                try:
                    codec = get_codec(settings.codec, **settings.codec_options())
                except InputError as exc:
                    raise InputError(f"{where}: {exc}") from None
                ok, why = codec.available()
                if not ok:
                    raise InputError(f"{where}: codec {settings.codec} is not available "
                                     f"here: {why}")
                if not settings.container and not codec.payload_is_standard:
                    raise InputError(f"{where}: {settings.codec} files here are not ones "
                                     f"other tools open ({codec.backend()}); write gencodec "
                                     "streams instead (--container)")
            self._codecs[key] = codec
        codec = self._codecs[key]
        try:
            if settings.bpp is not None:
                check_target_bpp(settings.bpp)
            elif settings.quality is not None and codec is not None:
                codec.quality.check(settings.quality)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def identity(self, spec: str, where: str) -> str:
        """What a model's output depends on (a folder's sha256); classic filters are
        built once here to check their options."""
        if spec not in self._identities:
            from gencodec.eval.runner import load_preprocessor, preprocessor_identity
            from gencodec.filters.classic import is_classic

            try:
                if is_classic(spec):
                    load_preprocessor(spec)  # builds the filter graph: checks its options
                self._identities[spec] = preprocessor_identity(spec)
            except InputError as exc:
                raise InputError(f"{where}: {spec!r}: {exc}") from None
        return self._identities[spec]


def check_items(located: list[tuple[str, Item]]) -> list[Item]:
    """Validate a job (see the module docstring) and give each item its
    preprocessor's identity; returns the items."""
    from gencodec.eval.metrics import MetricSuite

    if not located:
        raise InputError("the manifest lists no items")
    checker = _Checker()
    outputs: dict[str, str] = {}
    inputs = {os.path.realpath(item.input): where for where, item in located}
    items = []
    for where, item in located:
        checker.codec(item.settings, where)
        out = os.path.realpath(item.output)
        if out in outputs:
            raise InputError(f"{where}: output {item.output} is also the output of "
                             f"{outputs[out]}")
        if out in inputs:
            raise InputError(f"{where}: output {item.output} is the input of {inputs[out]} "
                             "(inputs are never overwritten)")
        outputs[out] = where
        model = item.settings.model
        items.append(dataclasses.replace(
            item, preprocess_id=checker.identity(item.settings.preprocess, where),
            model_id=checker.identity(model, where) if model else None))
    MetricSuite(list(located[0][1].settings.metrics))  # unknown metric names: InputError
    return items
