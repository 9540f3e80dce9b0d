"""The video encoder of :func:`~gencodec.filters.pyav.transcode`: its options from the
command line, checked when it opens rather than skipped or clamped.

libx265 skips an ``--x265-params`` key it does not know, or a value it cannot read,
with an FFmpeg log warning (which PyAV's default log level drops); x264 clamps a CRF
out of range silently; x265 refuses one with its own "x265 [error]" text on stderr.
:func:`open_encoder` collects all of that while the encoder opens and turns it into
one :class:`InputError` line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import av

from gencodec.errors import InputError


def parse_x265_params(text: str | None) -> dict[str, str]:
    """``"aq-mode=3:psy-rd=2"`` -> ``{"aq-mode": "3", "psy-rd": "2"}``."""
    params: dict[str, str] = {}
    for item in filter(None, (text or "").split(":")):
        key, sep, value = item.partition("=")
        if not key:
            raise InputError(f"--x265-params: bad item {item!r} (KEY=VALUE:KEY=VALUE)")
        params[key] = value if sep else "1"
    return params


#: Encoders whose --crf is x264/x265's constant rate factor, and its range for 8-bit
#: video (x264 clamps a value outside silently, x265 refuses it with its own text).
CRF_ENCODERS = ("libx264", "libx265")
CRF_RANGE = (0, 51)


def video_options(codec: str, crf: float | None, preset: str | None,
                  x265_params: str | None) -> dict[str, str]:
    """The encoder's options (``stream.options``); a CRF out of range is refused."""
    if crf is not None and codec in CRF_ENCODERS and not CRF_RANGE[0] <= crf <= CRF_RANGE[1]:
        raise InputError(f"--crf {crf:g}: {codec} takes {CRF_RANGE[0]}..{CRF_RANGE[1]} "
                         "(lower = better quality and more bits)")
    opts: dict[str, str] = {}
    if preset:
        opts["preset"] = preset
    if codec == "libx265":
        params = {"log-level": "error", **parse_x265_params(x265_params)}
        if crf is not None:
            params["crf"] = f"{crf:g}"
        opts["x265-params"] = ":".join(f"{k}={v}" for k, v in params.items())
    else:
        if x265_params:
            raise InputError("--x265-params needs -c:v libx265")
        if crf is not None:
            opts["crf"] = f"{crf:g}"
    return opts


@contextlib.contextmanager
def _encoder_messages():
    """Collect what an encoder says while it opens, instead of letting it reach the
    terminal or vanish: FFmpeg's log lines (libx265.c's warnings about --x265-params,
    which PyAV's default log level drops) and the library's own lines on stderr (x265
    prints "x265 [error]: ..." there itself). Yields a list of ``(level, text)``, level
    "error" or "warning", filled on exit."""
    said: list[tuple[str, str]] = []
    level, skip_repeated = av.logging.get_level(), av.logging.get_skip_repeated()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            av.logging.set_level(av.logging.WARNING)
            av.logging.set_skip_repeated(False)  # the same warning on the next open too
            with av.logging.Capture() as logs:
                yield said
        finally:
            av.logging.set_level(level)
            av.logging.set_skip_repeated(skip_repeated)
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            said.extend(("error" if lvl <= av.logging.ERROR else "warning", m.strip())
                        for lvl, _, m in logs)
            for line in tmp.read().decode(errors="replace").splitlines():
                kind, sep, text = line.partition("]: ")  # "x265 [error]: text"
                if sep:
                    said.append(("error" if kind.endswith("[error") else "warning", text))


def _x265_param_problems(said: list[tuple[str, str]], params: dict[str, str]) -> list[str]:
    """--x265-params that libx265 reported it could not use (it goes on without them)."""
    problems = []
    for _, line in said:
        if line.startswith("Unknown option: "):
            key = line[len("Unknown option: "):].rstrip(".")
            problems.append(f"{key}={params.get(key, '')}: x265 has no option {key!r}")
        elif line.startswith("Invalid value for "):
            key, _, value = line[len("Invalid value for "):].rstrip(".").partition(": ")
            problems.append(f"{key}={value}: not a value x265 takes for {key}")
    return problems


def open_encoder(vout, codec: str) -> None:
    """Open the encoder now: it takes its options (CRF range, preset names, x265
    parameters) and checks the picture when it opens, which would otherwise be on the
    first packet written. An x265 parameter it skips (misspelt, a bad value) is an
    error too, not the silent default it would be."""
    error, options = None, dict(vout.options)  # opening consumes them
    with _encoder_messages() as said:
        try:
            vout.codec_context.open()
        except av.FFmpegError as exc:
            error = exc
    if codec == "libx265":
        x265 = parse_x265_params(options.get("x265-params"))
        problems = _x265_param_problems(said, x265)
        if problems:
            raise InputError("--x265-params " + "; ".join(problems))
    if error is None:
        return
    w, h, fmt = vout.width, vout.height, av.VideoFormat(vout.pix_fmt)
    if fmt.chroma_width(w) * 2 == w + 1 or fmt.chroma_height(h) * 2 == h + 1:
        # libx264/libx265 (not ffv1) refuse odd sizes in subsampled chroma
        raise InputError(f"{w}x{h} has an odd side, which {codec} cannot code in "
                         f"{vout.pix_fmt}'s subsampled chroma; use --pix-fmt yuv444p "
                         "(or crop/pad the input to an even size)")
    # the library's own reason where it gave one ("x265 [error]: Aq-Mode is out of range")
    reasons = [text.rstrip(".") for level, text in said
               if level == "error" and not text.startswith("Cannot open")]
    shown = options
    if "x265-params" in shown:  # without the log level set here
        shown["x265-params"] = shown["x265-params"].replace("log-level=error", "").strip(":")
    settings = ", ".join(f"{k}={v}" for k, v in shown.items() if v) or "its defaults"
    raise InputError(f"-c:v {codec}: the encoder refuses these settings ({settings}): "
                     f"{'; '.join(reasons) or error.strerror}")
