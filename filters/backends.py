"""Back ends that run a frame model on a batch of tiles: small classes with one call,
``backend(x) -> y`` on float32 N x 3 x H x W tensors in [0, 1] (H, W multiples of
``backend.multiple``), in the style of vs-mlrt.

========================  ==========================================================
``TorchBackend``          PyTorch eager: CPU fp32; CUDA fp32, fp16 or bf16
``OrtBackend``            ONNX Runtime: CPU EP; CUDA EP with ``gencodec[onnx-gpu]``
========================  ==========================================================

:func:`make_backend` builds one from a :class:`~gencodec.filters.model.FrameModel`
and the names the CLI uses (``--backend torch|onnx --device cpu|cuda --precision
fp32|fp16|bf16``). CUDA paths (both back ends) run only where a GPU is present.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from gencodec.errors import InputError
from gencodec.filters.model import FrameModel

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend:
    """PyTorch eager inference. Half precisions need CUDA (CPU kernels for them are
    slow or missing). Channels-last memory layout by default: about 1.4x faster
    convolutions on this project's CPUs, and what tensor cores want on CUDA."""

    def __init__(self, model: FrameModel, device: str = "cpu", precision: str = "fp32",
                 channels_last: bool = True):
        if precision not in PRECISIONS:
            raise InputError(f"precision {precision!r}: use fp32, fp16 or bf16")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU visible to PyTorch")
        if self.device.type == "cpu" and precision != "fp32":
            raise InputError(f"{precision} runs on CUDA only; use fp32 on the CPU")
        self.dtype = PRECISIONS[precision]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, self.dtype).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.multiple, self.receptive_field = model.multiple, model.receptive_field
        self.name = f"torch-{self.device.type}-{precision}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
            return self.model(x).float()


class OrtBackend:
    """ONNX Runtime on a model exported by :func:`gencodec.filters.export.export_onnx`
    (dynamic N, H, W; its metadata carries ``multiple`` and ``receptive_field``)."""

    def __init__(self, onnx_path: str | os.PathLike, device: str = "cpu", threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("the onnx back end needs onnxruntime: pip install "
                             "'gencodec[onnx]' (or 'gencodec[onnx-gpu]' for CUDA)") from None
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError("ONNX Runtime has no CUDA execution provider here: "
                                 "pip install 'gencodec[onnx-gpu]' (onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise InputError(f"device {device!r}: use cpu or cuda")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.multiple = int(meta.get("gencodec_multiple", 1))
        rf = meta.get("gencodec_receptive_field", "")
        self.receptive_field = int(rf) if rf not in ("", "None") else None
        self.input_name = self.session.get_inputs()[0].name
        self.device = torch.device("cpu")
        self.name = f"onnxruntime-{device}"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (y,) = self.session.run(None, {self.input_name: arr})
        return torch.from_numpy(y)

    @classmethod
    def from_model(cls, model: FrameModel, device: str = "cpu",
                   threads: int = 0) -> "OrtBackend":
        """Export ``model`` to ONNX in a temporary folder and load it (the session
        holds the weights, so the folder goes when this returns).

        Uses the TorchScript-based exporter: same graph, much faster export."""
        from gencodec.filters.export import export_onnx

        with tempfile.TemporaryDirectory(prefix="gencodec-onnx-") as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, path, dynamo=False)
            return cls(path, device, threads)


def make_backend(model: FrameModel, backend: str = "torch", device: str = "cpu",
                 precision: str = "fp32", threads: int = 0):
    """The back end named by the CLI options."""
    if backend == "torch":
        return TorchBackend(model, device, precision)
    if backend == "onnx":
        if precision != "fp32":
            raise InputError("the onnx back end runs the fp32 export; use --backend "
                             "torch for fp16/bf16")
        return OrtBackend.from_model(model, device, threads)
    raise InputError(f"backend {backend!r}: use torch or onnx")
