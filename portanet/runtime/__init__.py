"""The deployment side: run exported ONNX files with onnxruntime — numpy and onnxruntime only.

Never imports TensorFlow, Keras, tf2onnx, onnx or :mod:`portanet.export` (a contract in CI
checks it). :func:`load` opens a file; :class:`Model` predicts.
"""

from portanet.runtime.load import load
from portanet.runtime.model import Model

__all__ = ["Model", "load"]
