"""Make an exported model faster within an accuracy budget, and measure how fast it is.

Export side of the house: imports onnx and onnxruntime's quantization tools, and TensorFlow
only (lazily) when a Keras source is compared.

>>> from portanet.optimize import optimize_model, bench_model       # doctest: +SKIP
>>> result = optimize_model("model.onnx", "rows.npy", min_agreement=0.99, max_abs=0.05)
"""

from portanet.optimize.bench import BenchReport, bench_model
from portanet.optimize.evaluate import Budget, Candidate
from portanet.optimize.optimize import LINEAGE, OptimizeResult, optimize_model
from portanet.optimize.transforms import TRANSFORMS
from portanet.options import BenchOptions, OptimizeOptions

__all__ = [
    "LINEAGE",
    "TRANSFORMS",
    "BenchOptions",
    "BenchReport",
    "Budget",
    "Candidate",
    "OptimizeOptions",
    "OptimizeResult",
    "bench_model",
    "optimize_model",
]
