"""portanet: Keras → ONNX with a parity gate, and a TensorFlow-free ONNX runtime.

The deployment side (this module, :func:`load`, :class:`Model`) imports only numpy, onnxruntime
and pyarrow. The export side (``portanet.export``, ``portanet.reference``) imports TensorFlow
lazily.
"""

from portanet.errors import (
    ConversionError,
    InputError,
    ModelLoadError,
    ParityError,
    PortanetError,
    UnsafeModelError,
)
from portanet.runtime import Model, load

__version__ = "0.1.0"

__all__ = [
    "ConversionError",
    "InputError",
    "Model",
    "ModelLoadError",
    "ParityError",
    "PortanetError",
    "UnsafeModelError",
    "__version__",
    "load",
]
