"""gencodec.filters: the generative preprocessing filter (frame model runner,
PyAV integration, rawvideo pipe, TorchScript and ONNX exporters)."""
