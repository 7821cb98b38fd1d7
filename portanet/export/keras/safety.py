"""Refuse Keras files that would run code or read outside themselves — before loading them.

Keras model files are programs in disguise: a ``Lambda`` layer carries Python bytecode that runs
while the model is rebuilt, a custom object names code to import, ``TFSMLayer`` loads another
SavedModel. Keras' own ``safe_mode`` covers ``.keras`` files, and ``.h5`` only since Keras 3.11.3
(tf-keras not at all), so portanet reads the configuration itself (JSON, from the HDF5 probe of
:mod:`portanet.export.keras.h5_probe` or the zip) and refuses before any deserialization. HDF5
links to other files are refused by the probe. ``allow_unsafe=True`` skips the checks here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portanet.errors import ModelLoadError, UnsafeModelError

#: Layers whose configuration carries code or loads other models.
CODE_LAYERS = {
    "Lambda": "runs Python code stored in the file",
    "TFSMLayer": "loads and runs another SavedModel",
}
#: Container and helper classes Keras writes itself, beside the public layers.
BUILTIN_CLASSES = {
    "Functional",
    "Sequential",
    "Model",
    "TFOpLambda",
    "SlicingOpLambda",
    "InputLayer",
    "__keras_tensor__",
    "__tensor__",
    "__numpy__",
    "__tuple__",
    "__typespec__",
    "__bytes__",
    "__ellipsis__",
    "__slice__",
}
SIZE_KEYS = (
    "units",
    "filters",
    "input_dim",
    "output_dim",
    "depth_multiplier",
    "num_heads",
    "key_dim",
    "value_dim",
    "num_bins",
    "max_tokens",
)
SHAPE_KEYS = ("batch_input_shape", "batch_shape", "input_shape", "target_shape", "shape")


@dataclass(frozen=True)
class KerasLimits:
    """Declared sizes beyond which a file is refused as absurd (memory exhaustion)."""

    max_dimension: int = 1 << 26
    max_shape_elements: int = 1 << 33
    max_dataset_bytes: int = 16 << 30


DEFAULT_KERAS_LIMITS = KerasLimits()


def parse_json(text: str, path: Path) -> Any:
    """Parse a JSON configuration, naming the file when it is invalid."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(
            f"{path}: expected a JSON model configuration, got invalid JSON "
            f"({exc.msg} at line {exc.lineno})"
        ) from exc


def iter_layers(config: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(class name, layer name, layer config) of every layer, nested models and wrappers too."""
    if isinstance(config, list):  # Keras 1/2.0 Sequential: a bare list of layers
        for item in config:
            yield from iter_layers(item)
        return
    if not isinstance(config, dict) or "class_name" not in config:
        return
    inner = config.get("config")
    inner = inner if isinstance(inner, dict) else {}
    yield str(config["class_name"]), str(inner.get("name", "?")), inner
    layers = inner.get(
        "layers", config.get("config") if isinstance(config.get("config"), list) else None
    )
    if isinstance(layers, list):
        for item in layers:
            yield from iter_layers(item)
    for key in ("layer", "backward_layer", "cell", "forward_layer"):
        if isinstance(inner.get(key), dict):
            yield from iter_layers(inner[key])
    if isinstance(inner.get("cells"), list):
        for item in inner["cells"]:
            yield from iter_layers(item)


def check_config(
    config: Any, origin: str, known_classes: set[str], limits: KerasLimits = DEFAULT_KERAS_LIMITS
) -> None:
    """Refuse code-carrying layers, unknown classes, custom functions and absurd sizes."""
    for class_name, name, inner in iter_layers(config):
        if class_name in CODE_LAYERS:
            raise UnsafeModelError(
                f"{origin}: layer {name!r} is a {class_name}, which "
                f"{CODE_LAYERS[class_name]}; refused (allow_unsafe loads it "
                f"only for a file you trust)"
            )
        if class_name not in known_classes and class_name not in BUILTIN_CLASSES:
            raise UnsafeModelError(
                f"{origin}: layer {name!r} has class {class_name!r}, which "
                f"is not a Keras layer (a custom object whose code is not in "
                f"the file); refused"
            )
        _check_sizes(inner, origin, name, limits)
    custom = _custom_function(config)
    if custom:
        raise UnsafeModelError(
            f"{origin}: the configuration refers to {custom}, a custom "
            f"function outside Keras; refused"
        )


def _check_sizes(inner: dict[str, Any], origin: str, layer: str, limits: KerasLimits) -> None:
    for key in SIZE_KEYS:
        value = inner.get(key)
        if isinstance(value, int) and value > limits.max_dimension:
            raise UnsafeModelError(
                f"{origin}: layer {layer!r} declares {key}={value:,}, above "
                f"the limit {limits.max_dimension:,}; refused as absurd"
            )
    for key in SHAPE_KEYS:
        shape = inner.get(key)
        if isinstance(shape, list) and all(isinstance(d, int) or d is None for d in shape):
            elements = 1
            for dim in shape:
                elements *= dim if isinstance(dim, int) and dim > 0 else 1
            if elements > limits.max_shape_elements:
                raise UnsafeModelError(
                    f"{origin}: layer {layer!r} declares {key}={shape}, "
                    f"{elements:,} elements per sample; refused as absurd"
                )


def _custom_function(node: Any, depth: int = 0) -> str | None:
    """A serialized reference to a function or class from a module outside Keras, if any."""
    if depth > 200:
        return "a configuration nested too deeply"
    if isinstance(node, dict):
        module = node.get("module")
        if (
            isinstance(module, str)
            and node.get("class_name") in ("function", "__lambda__")
            and not module.startswith(("keras", "tf_keras", "tensorflow"))
        ):
            return f"{module}.{node.get('config')}"
        if node.get("class_name") == "__lambda__":
            return "a serialized Python lambda"
        for value in node.values():
            found = _custom_function(value, depth + 1)
            if found:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _custom_function(value, depth + 1)
            if found:
                return found
    return None


def keras_layer_classes(module: Any) -> set[str]:
    """Layer class names of a Keras module (``keras`` or ``tf_keras``): its public layers, and the
    layers its own ``applications`` define (ConvNeXt's ``LayerScale``) — Keras code that its
    loader finds by itself, like any layer, never code from the file."""
    layers = module.layers
    return {name for name in dir(layers) if name[:1].isupper()} | _application_layers(module)


def _application_layers(module: Any) -> set[str]:
    import importlib
    import sys

    importlib.import_module(f"{module.__name__}.applications")  # imports every application
    prefix = f"{module.__name__}.src.applications."
    base = module.layers.Layer
    return {
        name
        for module_name, loaded in list(sys.modules.items())
        if module_name.startswith(prefix) and loaded is not None
        for name, value in vars(loaded).items()
        if isinstance(value, type) and issubclass(value, base) and value.__module__ == module_name
    }
