"""Refuse Keras files that would run code or read outside themselves — before loading them.

Keras model files are programs in disguise: a ``Lambda`` layer carries Python bytecode that runs
while the model is rebuilt, a custom object names code to import, ``TFSMLayer`` loads another
SavedModel, and HDF5 can link to other files (external links, external storage, virtual
datasets). Keras' own ``safe_mode`` covers ``.keras`` files, and ``.h5`` only since Keras 3.11.3
(tf-keras not at all), so portanet reads the configuration itself (JSON, with h5py or zipfile)
and refuses before any deserialization. ``allow_unsafe=True`` skips the checks.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portanet.errors import ModelLoadError, UnsafeModelError

#: Layers whose configuration carries code or loads other models.
CODE_LAYERS = {"Lambda": "runs Python code stored in the file",
               "TFSMLayer": "loads and runs another SavedModel"}
#: Container and helper classes Keras writes itself, beside the public layers.
BUILTIN_CLASSES = {"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda",
                   "InputLayer", "__keras_tensor__", "__tensor__", "__numpy__", "__tuple__",
                   "__typespec__", "__bytes__", "__ellipsis__", "__slice__"}
SIZE_KEYS = ("units", "filters", "input_dim", "output_dim", "depth_multiplier", "num_heads",
             "key_dim", "value_dim", "num_bins", "max_tokens")
SHAPE_KEYS = ("batch_input_shape", "batch_shape", "input_shape", "target_shape", "shape")


@dataclass(frozen=True)
class KerasLimits:
    """Declared sizes beyond which a file is refused as absurd (memory exhaustion)."""

    max_dimension: int = 1 << 26
    max_shape_elements: int = 1 << 33
    max_dataset_bytes: int = 16 << 30


DEFAULT_KERAS_LIMITS = KerasLimits()


def check_keras_file(path: Path, fmt: str, known_classes: set[str],
                     limits: KerasLimits = DEFAULT_KERAS_LIMITS) -> None:
    """Raise :class:`UnsafeModelError` if the file at ``path`` (format ``h5``/``keras``) is unsafe.

    ``known_classes`` are the layer class names the chosen Keras defines; any other class is a
    custom object whose code would have to be imported, and is refused.
    """
    if fmt == "h5":
        config = _h5_config(path, limits)
    elif fmt == "keras":
        config = _keras_zip_config(path)
    else:
        return
    check_config(config, str(path), known_classes, limits)


def _h5_config(path: Path, limits: KerasLimits) -> Any:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            _check_h5_structure(handle, path, limits)
            raw = handle.attrs.get("model_config")
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: expected a readable HDF5 model file, h5py says: "
                             f"{exc}") from exc
    if raw is None:
        raise ModelLoadError(f"{path}: expected a whole Keras model (HDF5 with a model_config "
                             f"attribute), got a file without one (weights only?)")
    return _parse_json(raw.decode() if isinstance(raw, bytes) else str(raw), path)


def _check_h5_structure(handle: Any, path: Path, limits: KerasLimits) -> None:
    import h5py

    problems: list[str] = []

    def visit_link(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"external link {name!r} → {link.filename}:{link.path}")

    handle.visititems_links(visit_link)
    if problems:  # never follow an external link, not even to look at datasets
        raise UnsafeModelError(f"{path}: HDF5 reads other files: {problems[0]}; refused")

    def visit(name: str, item: Any) -> None:
        if not isinstance(item, h5py.Dataset):
            return
        if item.external:
            problems.append(f"dataset {name!r} stores its data in {item.external[0][0]!r}")
        elif item.is_virtual:
            problems.append(f"dataset {name!r} is a virtual dataset over other files")
        elif item.size * item.dtype.itemsize > limits.max_dataset_bytes:
            problems.append(f"dataset {name!r} declares {item.size * item.dtype.itemsize:,} "
                            f"bytes (limit {limits.max_dataset_bytes:,})")

    handle.visititems(visit)
    if problems:
        raise UnsafeModelError(f"{path}: {problems[0]}; refused")


def _keras_zip_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("config.json") as handle:
                text = handle.read(64 << 20).decode("utf-8")
    except (KeyError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: expected a .keras archive with config.json, got: "
                             f"{exc}") from exc
    return _parse_json(text, path)


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: expected a JSON model configuration, got invalid JSON "
                             f"({exc.msg} at line {exc.lineno})") from exc


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
    layers = inner.get("layers", config.get("config") if isinstance(config.get("config"), list)
                       else None)
    if isinstance(layers, list):
        for item in layers:
            yield from iter_layers(item)
    for key in ("layer", "backward_layer", "cell", "forward_layer"):
        if isinstance(inner.get(key), dict):
            yield from iter_layers(inner[key])
    if isinstance(inner.get("cells"), list):
        for item in inner["cells"]:
            yield from iter_layers(item)


def check_config(config: Any, origin: str, known_classes: set[str],
                 limits: KerasLimits = DEFAULT_KERAS_LIMITS) -> None:
    """Refuse code-carrying layers, unknown classes, custom functions and absurd sizes."""
    for class_name, name, inner in iter_layers(config):
        if class_name in CODE_LAYERS:
            raise UnsafeModelError(f"{origin}: layer {name!r} is a {class_name}, which "
                                   f"{CODE_LAYERS[class_name]}; refused (use --allow-unsafe "
                                   f"only for a file you trust)")
        if class_name not in known_classes and class_name not in BUILTIN_CLASSES:
            raise UnsafeModelError(f"{origin}: layer {name!r} has class {class_name!r}, which "
                                   f"is not a Keras layer (a custom object whose code is not in "
                                   f"the file); refused")
        _check_sizes(inner, origin, name, limits)
    custom = _custom_function(config)
    if custom:
        raise UnsafeModelError(f"{origin}: the configuration refers to {custom}, a custom "
                               f"function outside Keras; refused")


def _check_sizes(inner: dict[str, Any], origin: str, layer: str, limits: KerasLimits) -> None:
    for key in SIZE_KEYS:
        value = inner.get(key)
        if isinstance(value, int) and value > limits.max_dimension:
            raise UnsafeModelError(f"{origin}: layer {layer!r} declares {key}={value:,}, above "
                                   f"the limit {limits.max_dimension:,}; refused as absurd")
    for key in SHAPE_KEYS:
        shape = inner.get(key)
        if isinstance(shape, list) and all(isinstance(d, int) or d is None for d in shape):
            elements = 1
            for dim in shape:
                elements *= dim if isinstance(dim, int) and dim > 0 else 1
            if elements > limits.max_shape_elements:
                raise UnsafeModelError(f"{origin}: layer {layer!r} declares {key}={shape}, "
                                       f"{elements:,} elements per sample; refused as absurd")


def _custom_function(node: Any, depth: int = 0) -> str | None:
    """A serialized reference to a function or class from a module outside Keras, if any."""
    if depth > 200:
        return "a configuration nested too deeply"
    if isinstance(node, dict):
        module = node.get("module")
        if isinstance(module, str) and node.get("class_name") in ("function", "__lambda__") \
                and not module.startswith(("keras", "tf_keras", "tensorflow")):
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
    """Public layer class names of a Keras module (``keras`` or ``tf_keras``)."""
    layers = module.layers
    return {name for name in dir(layers) if name[:1].isupper()}
