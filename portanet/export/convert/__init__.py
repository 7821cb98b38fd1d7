"""Keras → ONNX: layer tracing, tf2onnx with portanet's extensions, refusals naming layers."""
