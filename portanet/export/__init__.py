"""The export side: Keras files → ONNX through tf2onnx, behind a parity gate.

Imports TensorFlow, Keras, tf2onnx and onnx lazily, inside the functions that need them; the
runtime side (:mod:`portanet.runtime`, :mod:`portanet.tables`) never imports this package.

* :mod:`.keras` — read a Keras file for what it is (probe, safety checks, loader routing)
* :mod:`.convert` — Keras → ONNX (trace, freeze, tf2onnx, refusals naming layers)
* :mod:`.verify` — the parity gate (runners, inputs, comparison, layerwise localisation)
* :mod:`.pipeline` — :func:`export_model`, which strings them together
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExportResult", "export_model"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m portanet.export.keras.h5_probe`` (a child process) stays light.
    if name in __all__:
        from portanet.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'portanet.export' has no attribute {name!r}")
