"""Load the ``.h5`` files Keras 3 writes but cannot read back.

Keras 3 still saves ``model.save("x.h5")`` in the legacy HDF5 format, whose configuration drops
each object's ``module``. Two kinds of models then fail to reload in Keras itself:

* Models that apply Keras *operations* to tensors and Python numbers — MobileNetV3's
  ``x + 3.0`` and ``x * (1 / 6)`` become ``keras.ops`` ``Add``/``Multiply`` nodes called with a
  positional ``3.0``. Without their module, Keras rebuilds them as the merge *layers* of the same
  name, which accept only tensors ("Only input tensors may be passed as positional arguments").
  :func:`repair_operations` gives such entries back their module (``keras.src.ops.numpy``…). An
  entry is an operation when its class names a Keras operation and its configuration lacks the
  ``trainable`` key every layer writes.
* Models built from layers that Keras' own applications define (ConvNeXt's ``LayerScale``,
  EfficientNet's ``StochasticDepth``): the legacy loader only knows ``keras.layers``.
  :func:`application_layers` hands those classes to it — Keras' code, never the file's.

:func:`load_keras3_h5` rebuilds the model from the repaired configuration with Keras' legacy
loader (in safe mode) and reads the weights from the same file with ``Model.load_weights``.
Export side only.
"""

from __future__ import annotations

import copy
import importlib
import sys
from pathlib import Path
from typing import Any

#: Keras 3 packages whose ``Operation`` classes may appear in a model configuration: data, not
#: API (the module names Keras itself writes into configurations).
OPS_PACKAGE = "keras.src.ops"


def operation_classes() -> dict[str, str]:
    """Keras 3 operation class name → the module that defines it (layers excluded)."""
    import keras

    importlib.import_module(OPS_PACKAGE)
    found: dict[str, str] = {}
    for name, module in sorted(sys.modules.items()):
        if not name.startswith(f"{OPS_PACKAGE}.") or module is None:
            continue
        for cls_name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, keras.Operation)
                and not issubclass(value, keras.layers.Layer)
                and value.__module__ == name
            ):
                found.setdefault(cls_name, name)
    return found


def application_layers() -> dict[str, type]:
    """Layer classes defined by Keras 3's own ``keras.applications`` modules, by name."""
    import keras

    importlib.import_module("keras.applications")
    prefix = "keras.src.applications."
    return {
        name: value
        for module_name, module in list(sys.modules.items())
        if module_name.startswith(prefix) and module is not None
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, keras.layers.Layer)
        and value.__module__ == module_name
    }


def repair_operations(config: Any) -> tuple[Any, list[str]]:
    """A copy of a Keras 3 legacy configuration whose operation entries carry their module
    again; also returns the names of the repaired entries."""
    ops = operation_classes()
    repaired = copy.deepcopy(config)
    names: list[str] = []
    for node in _layer_dicts(repaired):
        inner = node.get("config")
        class_name = str(node.get("class_name"))
        if (
            isinstance(inner, dict)
            and class_name in ops
            and "module" not in node
            and "trainable" not in inner
        ):
            node["module"] = ops[class_name]
            node["registered_name"] = class_name
            names.append(str(inner.get("name", "?")))
    return repaired, names


def _layer_dicts(config: Any) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict) or "class_name" not in node:
            return
        nodes.append(node)
        inner = node.get("config")
        if isinstance(inner, dict):
            for item in inner.get("layers", []) if isinstance(inner.get("layers"), list) else []:
                visit(item)
            for key in ("layer", "backward_layer", "cell", "forward_layer"):
                if isinstance(inner.get(key), dict):
                    visit(inner[key])
        elif isinstance(inner, list):
            visit(inner)

    visit(config)
    return nodes


def load_keras3_h5(path: Path, config: Any, *, allow_unsafe: bool = False) -> Any:
    """Rebuild a Keras 3 ``.h5`` model from its (repaired) configuration and load its weights.

    ``config`` is the file's ``model_config``, already checked by
    :func:`portanet.export.keras.safety.check_config` unless ``allow_unsafe``.
    """
    # Keras internals: no public API rebuilds a model from a legacy HDF5 configuration, and the
    # public keras.config.enable_unsafe_deserialization() is process-wide and one-way, where
    # SafeModeScope is scoped. Pinned by pyproject's keras bound; tests/export/test_internals.py
    from keras.src.legacy.saving import saving_options, saving_utils
    from keras.src.saving import serialization_lib

    repaired, _ = repair_operations(config)
    with (
        saving_options.keras_option_scope(use_legacy_config=True),
        serialization_lib.SafeModeScope(not allow_unsafe),
    ):
        model = saving_utils.model_from_config(repaired, custom_objects=application_layers())
    model.load_weights(path)
    return model
