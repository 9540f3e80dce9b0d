"""DiffC: lossy compression with a pretrained diffusion model (Vonderfecht & Liu,
ICLR 2025), behind the Codec interface.

``quality`` is the number of coding steps sent (1..number of timesteps in the profile,
higher is better; default: the first step reaching t <= 100): the stream ends at x_t
with t = profile.timesteps[quality - 1] and the decoder denoises from there. The stream
is progressive: ``decode(data, max_bytes=N)`` uses the steps complete in the first N
bytes::

    from gencodec.codecs_ext import get_codec
    diffc = get_codec("diffc")                    # the embedded gaussian-spectral model
    stream = diffc.encode(image, quality=8)
    coarse = diffc.decode(stream[:2000], max_bytes=2000)

Options: ``model`` (registry id, folder or hub id), ``profile`` (a profile JSON; by
default the model's own ``diffc_profile.json`` or an uncalibrated schedule), ``recon``
(``ddim`` = DiffC-F, ``ancestral`` = DiffC-A, ``x0`` = one-step prediction; decoder
side only), ``device``, ``seed`` (the shared-randomness key written in the stream) and
``refiner`` (SDXL: a refiner folder or hub id used for t <= 200; part of the fingerprint).

Sizes: images are edge-padded to the model's block size and up to its least side (so
1x1 works), and refused above its largest side; a decoder refuses a header claiming a
size the encoder would refuse before allocating anything. Encoding and decoding show
a progress bar (one tick per coding step) when stderr is a terminal.
"""

from __future__ import annotations

import hashlib
import numbers
from pathlib import Path

import numpy as np

from gencodec import container
from gencodec.codecs_ext.base import Codec, QualityRange, int_option
from gencodec.errors import BitstreamError, InputError


#: The default quality is the first step that reaches t <= DEFAULT_T.
DEFAULT_T = 100
#: R-D curves sample the first steps reaching these t by default (among the paper's
#: evaluation points, 900..100 and 90..10).
RD_TIMESTEPS = (500, 200, 100, 50, 20)


def resolve_profile(model: str, backbone, profile: str | Path | None):
    """The profile file given, else the model's own, else an uncalibrated default; and
    where it came from (for messages)."""
    from gencodec.diffc.profile import PROFILE_FILE, Profile, default_profile
    from gencodec.models import MODELS, model_path

    if profile is not None:
        return Profile.load(profile), f"profile {profile}"
    # a hub id's own profile is in the snapshot the backbone was loaded from
    folder = model_path(model) if model in MODELS else Path(getattr(backbone, "folder", model))
    if (folder / PROFILE_FILE).is_file():
        return Profile.load(folder / PROFILE_FILE), f"the model's own {PROFILE_FILE}"
    return default_profile(backbone.num_timesteps), "the uncalibrated default profile"


def _bar(total: int, desc: str):
    """A progress bar on stderr, shown only when it is a terminal (tqdm's disable=None)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=None, leave=False)


class DiffcCodec(Codec):
    """DiffC on a diffusion backbone (see the module docstring)."""

    name = "diffc"
    progressive = True
    #: the payload is only meaningful inside the container (size, model fingerprint)
    payload_is_standard = False
    #: ``seed`` is the encoder's: the stream carries it
    decoder_options = ("model", "profile", "recon", "device", "refiner")

    def __init__(self, model: str | None = None, profile: str | None = None,
                 recon: str | None = None, device: str = "cpu", seed: int = 0,
                 refiner: str | None = None):
        from gencodec.diffc.coder import DiffC
        from gencodec.diffc.profile import RECON_METHODS
        from gencodec.diffusion import DEFAULT_MODEL, load_backbone

        model = model or DEFAULT_MODEL
        if recon is not None and recon not in RECON_METHODS:
            raise InputError(f"diffc recon must be one of {RECON_METHODS}, got {recon!r}")
        seed = int_option(seed, 0, (1 << 32) - 1, "diffc seed")
        options = {"refiner": refiner} if refiner else {}
        self.backbone = load_backbone(model, device=device, **options)
        prof, self.profile_source = resolve_profile(model, self.backbone, profile)
        self.coder = DiffC(self.backbone, prof)
        self.profile = self.coder.profile
        self.fingerprint = self.coder.fingerprint
        self.pad_multiple = m = self.backbone.pad_multiple
        # images smaller than the model's least side are edge-padded up to it
        self.min_coded_size = -(-self.backbone.min_side // m) * m
        self.recon, self.seed = recon, int(seed)
        self._longest: tuple[bytes, int, bytes] | None = None
        ts = self.profile.timesteps
        default = next((k + 1 for k, t in enumerate(ts) if t <= DEFAULT_T), len(ts))
        self.quality = QualityRange("steps", 1, len(ts), default, higher_is_better=True)

    def first_step_at(self, t: int) -> int:
        """The first step (1-based) whose x_t has a timestep <= ``t`` (the last step if
        none has)."""
        ts = self.profile.timesteps
        return next((k + 1 for k, tk in enumerate(ts) if tk <= t), len(ts))

    def rd_settings(self) -> list[int]:
        """The steps reaching t <= :data:`RD_TIMESTEPS` (five points of the paper's
        curves); evenly spread steps when the profile has too few distinct ones."""
        steps = list(dict.fromkeys(self.first_step_at(t) for t in RD_TIMESTEPS))
        if len(steps) < 4:
            n = self.profile.num_steps
            steps = sorted({int(round(v)) for v in np.linspace(1, n, min(n, 5))})
        return steps

    def coded_steps(self, data: bytes) -> int:
        """How many coding steps are complete in ``data``, a stream or a prefix of one
        (what ``decode(data, max_bytes=len(data))`` uses)."""
        from gencodec.diffc import bitstream

        stream = container.unpack(data, codec=self.name, allow_prefix=True)
        return len(bitstream.read_payload(stream.payload, prefix=True).segments)

    def describe_steps(self, steps: int) -> str:
        """``"3 of 20 steps (x_t at t=800)"``."""
        ts = self.profile.timesteps
        where = f"x_t at t={ts[steps - 1]}" if steps else "no step: from the prior"
        return f"{steps} of {len(ts)} steps ({where})"

    def backend(self) -> str:
        return f"DiffC on {self.backbone.name} ({self.profile.num_steps} steps, " \
               f"{self.profile.chunk_bits}-bit PFR chunks, {self.backbone.device})"

    def available(self) -> tuple[bool, str]:
        try:
            from gencodec import rcc  # noqa: F401
        except ImportError as exc:
            return False, f"the PFR coder gencodec.rcc does not load ({exc})"
        return True, ""

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        image = super()._prepare(image)
        h, w = image.shape[:2]
        if self._coded_size_error(w, h):
            raise InputError(f"diffc: image {w}x{h} is outside the sizes {self.backbone.name} "
                             f"codes (at most {self.backbone.max_side} pixels per side); "
                             "resize or crop it first")
        return image

    def _coded_size_error(self, width: int, height: int) -> bool:
        """Whether the padded size of a ``width`` x ``height`` image is outside the
        model's range (smaller images are padded up to the least side)."""
        try:
            self.backbone.check_size(*self.padded_size(width, height)[::-1])
        except InputError:
            return True
        return False

    def _encode_payload(self, image: np.ndarray, quality: float) -> bytes:
        """Encode ``quality`` steps. The stream of q steps is the first q segments of any
        longer stream of the same image, so the longest payload of the last image is
        kept and cut for lower qualities (a --bpp bisection then costs two encodes)."""
        from gencodec.diffc import bitstream

        steps = int(quality)
        key = hashlib.sha256(image.tobytes() + repr(image.shape).encode()).digest()
        if self._longest is not None and self._longest[0] == key \
                and self._longest[1] >= steps:
            return bitstream.cut_payload(self._longest[2], steps)
        x0 = self.backbone.encode_image(image)
        with _bar(steps, "DiffC encode") as bar:
            payload = self.coder.encode_latent(x0, steps, seed=self.seed, progress=bar).payload
        self._longest = (key, steps, payload)
        return payload

    def _decode_payload(self, payload: bytes, width: int, height: int,
                        prefix: bool = False) -> np.ndarray:
        from gencodec.diffc import bitstream

        pw, ph = self.padded_size(width, height)
        shape = self.backbone.latent_shape(ph, pw)
        parsed = bitstream.read_payload(payload, prefix=prefix)
        if not parsed.segments and not prefix:
            raise BitstreamError("the stream holds no coding step (an encoder writes at "
                                 "least one)")
        with _bar(len(parsed.segments), "DiffC decode") as bar:
            x_t, t = self.coder.replay(parsed, shape, progress=bar)
        x0 = self.coder.reconstruct(x_t, t, shape, self.recon, seed=parsed.seed)
        return self.backbone.decode_latent(x0)

    def _check_stream_size(self, width: int, height: int) -> None:
        """A header (CRC-valid, so forged or from another build) claiming a size the
        encoder refuses is an error before anything is allocated."""
        from gencodec.imageio import MAX_PIXELS

        if width * height > MAX_PIXELS:
            raise BitstreamError(f"{self.name}: stream claims {width}x{height} pixels, above "
                                 f"the limit of {MAX_PIXELS} (GENCODEC_MAX_PIXELS)")
        if self._coded_size_error(width, height):
            raise BitstreamError(f"{self.name}: stream claims a {width}x{height} image, larger "
                                 f"than {self.backbone.name} codes ({self.backbone.max_side} "
                                 "pixels per side at most)")

    def decode(self, data: bytes, max_bytes: int | None = None) -> np.ndarray:
        """Decode a stream, or with ``max_bytes`` only the steps complete in its first
        ``max_bytes`` bytes (a noisier x_t, a coarser image). Without ``max_bytes`` a
        short stream is an error (:class:`BitstreamError`), never decoded silently."""
        prefix = max_bytes is not None
        if prefix:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral):
                raise InputError(f"max_bytes must be an integer, got {max_bytes!r}")
            if max_bytes < container.HEADER_SIZE + 2:
                raise BitstreamError(f"max_bytes {max_bytes} is less than the stream "
                                     f"header ({container.HEADER_SIZE + 2} bytes)")
            data = data[:max_bytes]
        head = container.read_header(data)
        if head.codec == self.name and head.fingerprint != self.fingerprint:
            raise BitstreamError(
                f"{self.name}: model fingerprint mismatch: the stream was encoded with another "
                f"model or coding profile than this decoder's ({self.backbone.name} with "
                f"{self.profile_source}); decode with the --model and -O profile=... it was "
                f"encoded with (stream {head.fingerprint.hex()[:16]}..., decoder "
                f"{self.fingerprint.hex()[:16]}...)")
        stream = container.unpack(data, codec=self.name, fingerprint=self.fingerprint,
                                  allow_prefix=prefix)
        h, w = stream.header.height, stream.header.width
        self._check_stream_size(w, h)
        try:
            out = self._decode_payload(stream.payload, w, h, prefix=stream.truncated)
        except (BitstreamError, InputError) as exc:
            raise BitstreamError(f"{self.name}: {exc}") from None
        except Exception as exc:  # the payload passed its CRCs but does not decode
            raise BitstreamError(f"{self.name}: payload does not decode: {exc}") from None
        return np.ascontiguousarray(out[:h, :w])


def describe_stream(data: bytes, options: dict) -> list[tuple[str, str]]:
    """What ``gencodec info`` shows of a DiffC stream, as (label, text) rows: its coding
    steps and seed, and the model and profile its fingerprint names. Tried: the decoder
    ``options`` given (``model``, ``profile``, ...), else each embedded model with its
    own profile."""
    from gencodec.diffc import bitstream
    from gencodec.diffusion import DEFAULT_MODEL, registered_backbones

    stream = container.unpack(data, codec=DiffcCodec.name)
    payload = bitstream.read_payload(stream.payload)
    steps = len(payload.segments)
    rows = [("steps", f"{steps} coded, seed {payload.seed}")]
    candidates = [options] if options else [{"model": m} for m in registered_backbones()]
    tried = []
    for opts in candidates:
        codec = DiffcCodec(**opts)
        if codec.fingerprint == stream.header.fingerprint:
            rows += [("model", f"{codec.backbone.name}, {codec.profile_source} (fingerprint "
                               "matches)"),
                     ("profile", codec.describe_steps(steps))]
            return rows
        tried.append(f"{codec.backbone.name} with {codec.profile_source}")
    hint = "the --model and -O profile= it was encoded with" if options else \
        f"--model and -O profile= (default model: {DEFAULT_MODEL})"
    rows.append(("model", f"unknown: not {' or '.join(tried)}; decoding needs {hint}"))
    return rows
