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
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gencodec import container
from gencodec.codecs_ext.base import Codec, QualityRange
from gencodec.errors import BitstreamError, InputError


#: The default quality is the first step that reaches t <= DEFAULT_T.
DEFAULT_T = 100


def resolve_profile(model: str, backbone, profile: str | Path | None):
    """The profile file given, else the model's own, else an uncalibrated default."""
    from gencodec.diffc.profile import PROFILE_FILE, Profile, default_profile
    from gencodec.models import MODELS, model_path

    if profile is not None:
        return Profile.load(profile)
    # a hub id's own profile is in the snapshot the backbone was loaded from
    folder = model_path(model) if model in MODELS else Path(getattr(backbone, "folder", model))
    if (folder / PROFILE_FILE).is_file():
        return Profile.load(folder / PROFILE_FILE)
    return default_profile(backbone.num_timesteps)


class DiffcCodec(Codec):
    """DiffC on a diffusion backbone (see the module docstring)."""

    name = "diffc"
    progressive = True

    def __init__(self, model: str | None = None, profile: str | None = None,
                 recon: str | None = None, device: str = "cpu", seed: int = 0,
                 refiner: str | None = None):
        from gencodec.diffc.coder import DiffC
        from gencodec.diffc.profile import RECON_METHODS
        from gencodec.diffusion import DEFAULT_MODEL, load_backbone

        model = model or DEFAULT_MODEL
        if recon is not None and recon not in RECON_METHODS:
            raise InputError(f"diffc recon must be one of {RECON_METHODS}, got {recon!r}")
        if not 0 <= int(seed) < 1 << 32:
            raise InputError(f"diffc seed must be in 0..2^32-1, got {seed}")
        options = {"refiner": refiner} if refiner else {}
        self.backbone = load_backbone(model, device=device, **options)
        self.coder = DiffC(self.backbone, resolve_profile(model, self.backbone, profile))
        self.profile = self.coder.profile
        self.fingerprint = self.coder.fingerprint
        self.pad_multiple = self.backbone.pad_multiple
        self.recon, self.seed = recon, int(seed)
        self._longest: tuple[bytes, int, bytes] | None = None
        ts = self.profile.timesteps
        default = next((k + 1 for k, t in enumerate(ts) if t <= DEFAULT_T), len(ts))
        self.quality = QualityRange("steps", 1, len(ts), default, higher_is_better=True)

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
        self.backbone.check_size(*image.shape[:2])
        return image

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
        payload = self.coder.encode_latent(x0, steps, seed=self.seed).payload
        self._longest = (key, steps, payload)
        return payload

    def _decode_payload(self, payload: bytes, width: int, height: int,
                        prefix: bool = False) -> np.ndarray:
        from gencodec.diffc import bitstream

        m = self.pad_multiple
        ph, pw = -(-height // m) * m, -(-width // m) * m
        shape = self.backbone.latent_shape(ph, pw)
        parsed = bitstream.read_payload(payload, prefix=prefix)
        x_t, t = self.coder.replay(parsed, shape)
        x0 = self.coder.reconstruct(x_t, t, shape, self.recon, seed=parsed.seed)
        return self.backbone.decode_latent(x0)

    def decode(self, data: bytes, max_bytes: int | None = None) -> np.ndarray:
        """Decode a stream, or with ``max_bytes`` only the steps complete in its first
        ``max_bytes`` bytes (a noisier x_t, a coarser image). Without ``max_bytes`` a
        short stream is an error (:class:`BitstreamError`), never decoded silently."""
        prefix = max_bytes is not None
        if prefix:
            if max_bytes < container.HEADER_SIZE + 2:
                raise BitstreamError(f"max_bytes {max_bytes} is less than the stream "
                                     f"header ({container.HEADER_SIZE + 2} bytes)")
            data = data[:max_bytes]
        stream = container.unpack(data, codec=self.name, fingerprint=self.fingerprint,
                                  allow_prefix=prefix)
        h, w = stream.header.height, stream.header.width
        try:
            out = self._decode_payload(stream.payload, w, h, prefix=stream.truncated)
        except (BitstreamError, InputError) as exc:
            raise BitstreamError(f"{self.name}: {exc}") from None
        except Exception as exc:  # the payload passed its CRCs but does not decode
            raise BitstreamError(f"{self.name}: payload does not decode: {exc}") from None
        return np.ascontiguousarray(out[:h, :w])
