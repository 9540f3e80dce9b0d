"""OSDiff (Jia et al.): a learned latent codec with a one-step diffusion decoder, behind
the Codec interface.

``--model DIR`` is a folder in diffusers' SD layout (``unet/``, ``vae/``, ``scheduler/``,
optionally ``gencodec_conditioning.safetensors``: the frozen backbone) with the rate
models beside it, one folder each, written by ``OSDiff.save_rate_model`` (``gencodec
train osdiff``)::

    DIR/osdiff/q1/{config.json, model.safetensors}    fewest bits
    DIR/osdiff/q2/...                                  more bits, and so on

``quality`` (``-q``) picks the rate model (1..K, higher is better). The payload is
``b"OSDF"``, a version byte, the quality byte, then the constriction ANS words
(little-endian uint32) of the hyper latent, the latent and an end marker (version 2;
version 1 had no marker and is refused); the container carries the image size and a
fingerprint: sha256 of the backbone's files' digest (computed once per codec), the
chosen rate model's files and the coding profile. A decoder with other weights
refuses the stream by fingerprint; damaged or truncated streams raise BitstreamError.
A rate model that does not load is an InputError naming it.

Images are edge-padded to multiples of 64 pixels (SD VAE 8 x latent codec 8) and
cropped back on decoding::

    from gencodec.codecs_ext import get_codec
    osdiff = get_codec("osdiff", model="path/to/DIR")
    stream = osdiff.encode(image, quality=2)
    out = osdiff.decode(stream)
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from gencodec import container
from gencodec.codecs_ext.base import Codec, QualityRange
from gencodec.errors import BitstreamError, GencodecError, InputError

MAGIC = b"OSDF"
#: 3: decoded from the shared noise of PFR format 2 (gencodec.rcc.philox_normals).
#: 2: the noise of PFR format 1, and 1: no end marker; neither is read any more.
PAYLOAD_VERSION = 3
_HEAD = struct.Struct(">4sBB")
RATE_MODELS = "osdiff"


def rate_model_folders(folder: Path) -> dict[int, Path]:
    """{quality: folder} of ``folder/osdiff/q<k>`` (each with a config.json)."""
    root = folder / RATE_MODELS
    found = {}
    if root.is_dir():
        for d in root.iterdir():
            if d.name[:1] == "q" and d.name[1:].isdigit() and (d / "config.json").is_file():
                found[int(d.name[1:])] = d
    return found


class OsdiffCodec(Codec):
    """OSDiff on a backbone folder with its rate models (see the module docstring)."""

    name = "osdiff"
    payload_is_standard = False
    decoder_options = ("model", "device")
    #: the format's range (the quality byte); an instance narrows it to its q1..qK
    quality = QualityRange("rate model", 1, 255, 1, higher_is_better=True)

    def __init__(self, model: str | None = None, device: str = "cpu"):
        if not model:
            raise InputError("osdiff needs --model DIR: a diffusers SD folder with rate models "
                             f"in DIR/{RATE_MODELS}/q1, q2, ... (no default model ships)")
        folder = Path(model)
        if not folder.is_dir():
            raise InputError(f"osdiff: --model {model} is not a folder (a local SD folder "
                             f"with {RATE_MODELS}/q1, ... is needed)")
        self.folder, self.device = folder, device
        self.rate_models = rate_model_folders(folder)
        ks = sorted(self.rate_models)
        if not ks or ks != list(range(1, len(ks) + 1)):
            raise InputError(f"osdiff: {folder} needs rate models {RATE_MODELS}/q1 ... qK "
                             f"(found {', '.join(f'q{k}' for k in ks) or 'none'})")
        self.quality = QualityRange("rate model", 1, len(ks), len(ks), higher_is_better=True)
        self._model = None
        self._loaded_q: int | None = None
        self._fingerprints: dict[int, bytes] = {}
        self._backbone_digest: bytes | None = None
        self.pad_multiple = self.min_coded_size = 64
        self.fingerprint = self.fingerprint_of(len(ks))

    # -- models and fingerprints ----------------------------------------------------
    def fingerprint_of(self, q: int) -> bytes:
        """sha256 of the backbone's digest (:meth:`backbone_digest`), rate model q's
        files and the coding profile."""
        if q not in self._fingerprints:
            from gencodec.diffusion.base import sha256_files
            from gencodec.osdiff.entropy import END_MARKER, RESIDUAL_LIMIT

            files = sorted(p for p in self.rate_models[q].iterdir() if p.is_file())
            profile = (f"osdiff payload {PAYLOAD_VERSION} residuals {RESIDUAL_LIMIT} "
                       f"marker {END_MARKER:08x}").encode()
            self._fingerprints[q] = sha256_files(files, self.backbone_digest() + profile)
        return self._fingerprints[q]

    def backbone_digest(self) -> bytes:
        """sha256 of the backbone's files (several GB for SD 2.1: hashed once, shared by
        every rate model's fingerprint)."""
        if self._backbone_digest is None:
            from gencodec.diffusion.base import sha256_files
            from gencodec.diffusion.sd import CONDITIONING_FILE, SUBFOLDERS, component_files

            files = [p for s in SUBFOLDERS for p in component_files(self.folder, s)]
            cond = self.folder / CONDITIONING_FILE
            files += [cond] if cond.is_file() else []
            self._backbone_digest = sha256_files(files)
        return self._backbone_digest

    def model(self, q: int):
        """The OSDiff model with rate model ``q`` loaded (the backbone is loaded once)."""
        from gencodec.osdiff.model import OSDiff

        if self._loaded_q != q:
            self._loaded_q = None  # a load that fails half way leaves no usable model
            try:
                cfg = OSDiff.read_config(self.rate_models[q])
                if self._model is None or not self._model.config.same_architecture(cfg):
                    self._model = None
                    self._model = OSDiff.from_backbone(self.folder, cfg, device=self.device)
                self._model.load_rate_model(self.rate_models[q])
            except GencodecError:
                raise
            except Exception as exc:  # noqa: BLE001 - bad JSON, SafetensorError, KeyError...
                why = " ".join(str(exc).split()) or type(exc).__name__  # one line
                raise InputError(f"osdiff: {self.folder}: cannot load rate model q{q}: "
                                 f"{why}") from None
            self._model.eval()
            # entropy parameters in float64: see gencodec.osdiff.latent_codec
            self._model.latent_codec.double()
            self._loaded_q = q
            self.pad_multiple = self.min_coded_size = self._model.pad_multiple
        return self._model

    def backend(self) -> str:
        return f"OSDiff on {self.folder} ({len(self.rate_models)} rate models, {self.device})"

    def available(self) -> tuple[bool, str]:
        try:
            import constriction  # noqa: F401
            import diffusers  # noqa: F401
        except ImportError as exc:
            return False, f"needs gencodec[diffusion] and constriction ({exc})"
        return True, ""

    # -- coding ----------------------------------------------------------------------
    def _encode_payload(self, image: np.ndarray, quality: float) -> bytes:
        import torch

        q = int(quality)
        model = self.model(q)
        self.fingerprint = self.fingerprint_of(q)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        x = x.to(self.device, torch.float32) / 255.0
        words = model.compress(x)
        return _HEAD.pack(MAGIC, PAYLOAD_VERSION, q) + words.astype("<u4").tobytes()

    def encode(self, image: np.ndarray, quality: float | None = None) -> bytes:
        """Encode with rate model ``quality`` (images are padded to the model's block)."""
        q = self.quality.check(self.quality.default if quality is None else quality)
        self.model(q)  # sets the padding before the base class pads
        return super().encode(image, q)

    def _decode_payload(self, payload: bytes, width: int, height: int) -> np.ndarray:
        import torch

        q, words = parse_payload(payload)
        model = self.model(q)
        pw, ph = self.padded_size(width, height)
        try:
            x = model.decompress(words, (ph, pw))[0]
        except BitstreamError as exc:  # the entropy decoder's: name the codec
            raise BitstreamError(f"{self.name}: {exc}") from None
        return (x * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def decode(self, data: bytes) -> np.ndarray:
        """Decode a stream with the rate model its payload names; another model's stream
        is refused by its fingerprint. The rate model is loaded first, so one that does
        not load is an InputError (not stream damage); the base class then checks and
        decodes the stream (size limit, decoder errors, the decoded shape)."""
        stream = container.unpack(data, codec=self.name)
        q, _ = parse_payload(stream.payload)
        if q not in self.rate_models:
            raise BitstreamError(f"{self.name}: the stream uses rate model q{q}, which "
                                 f"{self.folder} does not have")
        if stream.header.fingerprint != self.fingerprint_of(q):
            raise BitstreamError(
                f"{self.name}: model fingerprint mismatch: the stream was encoded with another "
                f"backbone or rate model than {self.folder} (q{q}) (stream "
                f"{stream.header.fingerprint.hex()[:16]}..., decoder "
                f"{self.fingerprint_of(q).hex()[:16]}...)")
        self.model(q)
        return self._decode_stream(stream)


def parse_payload(payload: bytes) -> tuple[int, np.ndarray]:
    """(quality, ANS words) of a payload, or BitstreamError."""
    if len(payload) < _HEAD.size:
        raise BitstreamError(f"osdiff: payload of {len(payload)} bytes is shorter than its "
                             f"{_HEAD.size}-byte head")
    magic, version, q = _HEAD.unpack_from(payload)
    if magic != MAGIC:
        raise BitstreamError("osdiff: not an OSDiff payload (wrong magic)")
    if version == 1:
        raise BitstreamError("osdiff: payload version 1 (no end marker) is no longer read: "
                             f"re-encode the image (this gencodec reads {PAYLOAD_VERSION})")
    if version == 2:
        raise BitstreamError("osdiff: payload version 2 decodes from the shared noise of PFR "
                             "format 1, which this gencodec no longer draws: re-encode the "
                             f"image (this gencodec reads {PAYLOAD_VERSION})")
    if version != PAYLOAD_VERSION:
        raise BitstreamError(f"osdiff: payload version {version} unknown (this gencodec "
                             f"reads {PAYLOAD_VERSION})")
    body = payload[_HEAD.size:]
    if len(body) % 4 or not body:
        raise BitstreamError(f"osdiff: coded data of {len(body)} bytes is not a whole "
                             "number of 32-bit words")
    return q, np.frombuffer(body, dtype="<u4").astype(np.uint32)
