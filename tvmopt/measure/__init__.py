"""Measuring tools around the pipeline: bench (vs ONNX Runtime and PyTorch), check (a session's
estimate vs the compiled model), demo (the whole path on the bundled example)."""
