"""``gencodec codecs``: list the codecs and the back end each one uses here."""

from __future__ import annotations

from gencodec import _native
from gencodec.codecs_ext import CODECS, options_of


def register(sub) -> None:
    p = sub.add_parser("codecs", help="list codecs, their quality ranges and back ends",
                       description="List every codec, its quality parameter (range, "
                                   "direction, default) and the library or program that "
                                   "runs it on this machine, then each codec's options "
                                   "(-O KEY=VALUE) with their defaults.")
    p.set_defaults(func=run)


def run(args) -> int:
    rows = []
    for name, cls in CODECS.items():
        try:
            codec = cls()
            ok, why = codec.available()
            rows.append((name, codec.quality.describe(),
                         codec.backend() if ok else f"UNAVAILABLE: {why}"))
        except Exception as exc:  # noqa: BLE001 - one broken codec must not hide the rest
            quality = getattr(cls, "quality", None)
            rows.append((name, quality.describe() if hasattr(quality, "describe") else "?",
                         f"UNAVAILABLE: {exc or type(exc).__name__}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'codec':<{w0}}  {'quality':<{w1}}  back end")
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    print("\noptions (-O KEY=VALUE; defaults shown, '-' = not set):")
    for name, cls in CODECS.items():
        print(f"  {name:<{w0}}  {describe_options(cls) or '(none)'}")
    info = _native.build_info()
    cuda = (f"CUDA compiled, {info['cuda_devices']} device(s)" if info["cuda_compiled"]
            else "CUDA not compiled")
    print(f"\nnative core: {info['compiler']}, OpenMP {info['openmp_threads']} threads, {cuda}")
    return 0


def describe_options(cls) -> str:
    """``"subsampling=420 method=6"``: a codec's options and their defaults."""
    return " ".join(f"{k}={'-' if v is None else v}" for k, v in options_of(cls).items())
