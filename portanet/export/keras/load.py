"""Load any Keras model file: route by format and the file's ``keras_version``.

* Keras 2 ``.h5`` (2.x, including ``2.x.y-tf`` from tf.keras) → ``tf_keras`` (the maintained
  Keras 2), which still reads old configs that Keras 3 refuses.
* Keras 3 ``.h5`` and ``.keras`` → ``keras`` (3.x).
* SavedModel directories → ``tf_keras`` when Keras wrote them (tf.keras ``model.save(dir)``),
  else TensorFlow's own loader and the ``serving_default`` signature (Keras 3 ``model.export``).
* A live Keras model object → :func:`from_model`, for exporting without a file.

Models are never compiled on load (old optimizer configs break loading). Models nested inside
Sequential or functional models (Teachable Machine files) load like any other. Export side only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portanet._files import sha256_of
from portanet.errors import ModelLoadError, UnsafeModelError, first_line
from portanet.export.keras.archive import inspect_archive
from portanet.export.keras.h5_probe import probe
from portanet.export.keras.repair import load_keras3_h5, operation_classes
from portanet.export.keras.safety import (
    BUILTIN_CLASSES,
    DEFAULT_KERAS_LIMITS,
    KerasLimits,
    check_config,
    keras_layer_classes,
    parse_json,
)

log = logging.getLogger("portanet")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def quiet_tensorflow() -> Any:
    """Import TensorFlow with its start-up chatter silenced; returns the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        # TensorFlow's C++ libraries log to fd 2 while loading, before any setting applies:
        # hold that output back, and replay it only if the import fails.
        with tempfile.TemporaryFile() as captured:
            saved = os.dup(2)
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
                import tf2onnx  # noqa: F401  (loads TensorFlow's converter libraries too)
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    tf.autograph.set_verbosity(0)
    return tf


@dataclass
class LoadedKeras:
    """A loaded Keras model and where it came from."""

    model: Any
    path: Path
    format: str  # "h5", "keras", "savedmodel" or "memory"
    loader: str  # "keras", "tf_keras" or "tensorflow"
    keras_version: str | None
    sha256: str | None
    #: Root HDF5 attributes read by the probe (``.h5`` only), e.g. ``portanet_schema``.
    attributes: dict[str, str] = field(default_factory=dict, repr=False)
    #: Large weights a conversion left for an external-data file
    #: (:class:`portanet.export.convert.external.ExternalWeights`): set only on the copy the gate
    #: hands to :func:`portanet.export.verify.layerwise.compare_layers` (which reads it), never
    #: by a conversion. ``None`` otherwise.
    external: Any = field(default=None, repr=False)

    def portanet_attribute(self, key: str) -> Any:
        """A JSON attribute portanet's trainer wrote into the ``.h5`` (``None`` when absent)."""
        raw = self.attributes.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(
                f"{self.path}: attribute {key!r} should hold JSON, got {raw[:60]!r}"
            ) from exc


def detect_format(path: Path) -> str:
    """``h5``, ``keras`` or ``savedmodel``; :class:`ModelLoadError` for anything else."""
    if not path.exists():
        raise ModelLoadError(
            f"{path}: no such file or directory (expected a Keras .h5, .keras "
            f"or SavedModel directory)"
        )
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelLoadError(
            f"{path}: expected a SavedModel directory with saved_model.pb, "
            f"got a directory without one"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the file ({exc.strerror})") from exc
    if head == HDF5_SIGNATURE:
        return "h5"
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        return "keras"
    raise ModelLoadError(
        f"{path}: not a model file: expected a Keras .h5 (HDF5), .keras (zip) "
        f"or SavedModel directory, got {len(head)} leading bytes {head!r}"
    )


def h5_keras_version(path: Path) -> str | None:
    """The ``keras_version`` attribute of an HDF5 model file (``None`` when absent)."""
    return _h5_attributes(path, DEFAULT_KERAS_LIMITS).get("keras_version")


def _h5_attributes(path: Path, limits: KerasLimits) -> dict[str, str]:
    attributes = probe(path, max_dataset_bytes=limits.max_dataset_bytes).attributes
    if "model_config" not in attributes:
        raise ModelLoadError(
            f"{path}: expected a whole Keras model (HDF5 with a model_config "
            f"attribute), got a file without one (weights only?)"
        )
    return attributes


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 2


def load_keras(
    path: str | os.PathLike[str],
    *,
    allow_unsafe: bool = False,
    limits: KerasLimits = DEFAULT_KERAS_LIMITS,
) -> LoadedKeras:
    """Load a Keras model from ``.h5``, ``.keras`` or a SavedModel directory, uncompiled.

    The file is read for what it is first, routed by the Keras version that wrote it (recorded
    as ``keras_version``). Unless ``allow_unsafe``, it is checked before any of it is
    deserialized (:mod:`portanet.export.keras.safety`, :mod:`portanet.export.keras.archive`):
    Lambda, TFSMLayer and unknown custom layers, custom functions, odd or duplicate zip members,
    pickled weights, HDF5 links to other files and absurd declared sizes are refused with
    :class:`UnsafeModelError`. A file that holds no architecture (a subclassed model's class
    name only) or a SavedModel without its weights is a :class:`ModelLoadError`.
    """
    source = Path(path)
    fmt = detect_format(source)
    digest = sha256_of(source)
    config: Any = None
    version: str | None = None
    attributes: dict[str, str] = {}
    if fmt == "h5":
        attributes = _h5_attributes(source, limits)  # read in a child process first
        version = attributes.get("keras_version")
        config = parse_json(attributes["model_config"], source)
    elif fmt == "keras":
        archive = inspect_archive(source, max_member_bytes=limits.max_dataset_bytes)
        config, version = archive.config, archive.keras_version
    else:
        version = savedmodel_keras_version(source)
    loader = "keras" if fmt != "savedmodel" and _major(version) >= 3 else "tf_keras"
    quiet_tensorflow()
    if allow_unsafe:
        log.warning(
            "%s: allow_unsafe: loading without safety checks; the file may run code", source
        )
    elif config is not None:
        known = keras_layer_classes(__import__(loader))
        if loader == "keras":
            known |= set(operation_classes())
        check_architecture(config, str(source), known)
        check_config(config, str(source), known, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "h5" and loader == "keras":
                model = load_keras3_h5(source, config, allow_unsafe=allow_unsafe)
            elif fmt == "savedmodel":
                model, loader = _load_savedmodel(source)
            elif loader == "keras":
                model = _load_keras3(source, allow_unsafe)
            else:
                model = _load_tf_keras(source, allow_unsafe)
    except (ModelLoadError, UnsafeModelError):
        raise
    except Exception as exc:  # Keras raises many unrelated types for bad files
        raise ModelLoadError(
            f"{source}: expected a loadable Keras model ({fmt}, written by "
            f"Keras {version or 'of unknown version'}, loaded with {loader}), "
            f"loading failed: {keras_message(exc)}"
        ) from exc
    return LoadedKeras(model, source, fmt, loader, version, digest, attributes=attributes)


def keras_message(exc: BaseException, limit: int = 200) -> str:
    """Keras' error as one readable line: its first sentence(s), without the full object
    configuration Keras appends, cut at ``limit`` characters."""
    text = first_line(exc, 10_000)
    text = re.split(
        r"\s*(?:Full object config|Received: config|config=|Config:)\s*[:=]?\s*"
        r"[{\[]",
        text,
        maxsplit=1,
    )[0].rstrip(" .:,")
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_architecture(config: Any, origin: str, known: set[str]) -> None:
    """A model file whose top-level object is not a Keras model class and lists no layers holds
    no architecture (a subclassed model saves only its class name): a :class:`ModelLoadError`
    that says so, rather than a refusal."""
    if not isinstance(config, dict):
        return
    class_name = str(config.get("class_name", "?"))
    inner = config.get("config")
    inner = inner if isinstance(inner, dict) else {}
    if (
        class_name in known
        or class_name in BUILTIN_CLASSES
        or isinstance(inner.get("layers"), list)
    ):
        return
    module = config.get("module")
    where = f" (module {module!r})" if module else ""
    raise ModelLoadError(
        f"{origin}: expected a model architecture (layers and how they "
        f"connect), got only the class name {class_name!r}{where}: a "
        f"subclassed model, whose layers are made by Python code the file does "
        f"not hold; loading it needs the code that defines {class_name!r}"
    )


def savedmodel_keras_version(path: Path) -> str | None:
    """The Keras version recorded in a SavedModel's ``keras_metadata.pb`` (tf.keras writes it;
    read as text, never executed), or ``None``."""
    metadata = path / "keras_metadata.pb"
    if not metadata.is_file():
        return None
    with open(metadata, "rb") as handle:
        head = handle.read(64 << 20)
    found = re.search(rb'"keras_version":\s*"([0-9A-Za-z.+\-]{1,40})"', head)
    return found.group(1).decode() if found else None


def _check_savedmodel_files(path: Path) -> None:
    variables = path / "variables"
    if not (variables / "variables.index").is_file():
        what = (
            "no variables/ folder"
            if not variables.is_dir()
            else "a variables/ folder without variables.index"
        )
        raise ModelLoadError(
            f"{path}: expected a SavedModel with its weights in "
            f"variables/variables.index and variables.data-*, got {what}: the "
            f"weights are missing from the folder (copy the whole SavedModel "
            f"directory)"
        )


def _load_keras3(path: Path, allow_unsafe: bool = False) -> Any:
    import keras

    return keras.saving.load_model(path, compile=False, safe_mode=not allow_unsafe)


def _load_tf_keras(path: Path, allow_unsafe: bool = False) -> Any:
    import tf_keras

    return tf_keras.models.load_model(path, compile=False, safe_mode=not allow_unsafe)


def _load_savedmodel(path: Path) -> tuple[Any, str]:
    import tensorflow as tf
    import tf_keras

    _check_savedmodel_files(path)
    try:
        model = tf_keras.models.load_model(path, compile=False)
        if isinstance(model, tf_keras.Model) and model.inputs:
            return model, "tf_keras"
    except Exception:  # not written by Keras 2: try TensorFlow's own loader below
        pass
    try:
        root = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: expected a SavedModel, TensorFlow could not load it: {keras_message(exc)}"
        ) from exc
    signatures = getattr(root, "signatures", {})
    name = next((n for n in ("serving_default", "serve") if n in signatures), None)
    if name is None:
        raise ModelLoadError(
            f"{path}: expected a Keras SavedModel or one with a "
            f"'serving_default' signature, got signatures {list(signatures)}"
        )
    return SignatureModel(root, signatures[name], path.name), "tensorflow"


class SignatureModel:
    """A SavedModel's serving signature, dressed with what portanet reads from a Keras model.

    Inputs are the signature's keyword arguments in sorted order; outputs its result keys in
    sorted order. It has no layers, so layerwise comparison and layer names are unavailable.
    """

    def __init__(self, root: Any, function: Any, name: str) -> None:
        self._root = root  # keeps the restored variables alive
        self._function = function
        _, keywords = function.structured_input_signature
        self.name = name
        self.input_names = sorted(keywords)
        self.inputs = [keywords[n] for n in self.input_names]
        results = function.structured_outputs
        if not isinstance(results, dict):
            results = {"output_0": results}
        self.output_names = sorted(results)
        self.outputs = [results[n] for n in self.output_names]
        self.layers: list[Any] = []
        self.weights = list(function.variables)

    def __call__(self, inputs: Any, training: bool = False) -> list[Any]:
        arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        results = self._function(**dict(zip(self.input_names, arrays, strict=False)))
        if not isinstance(results, dict):
            return [results]
        return [results[n] for n in self.output_names]


def from_model(model: Any) -> LoadedKeras:
    """Wrap a live Keras model (Keras 3 or tf_keras) for export without a file."""
    quiet_tensorflow()
    module = type(model).__module__
    loader = "tf_keras" if module.startswith("tf_keras") else "keras"
    version = getattr(__import__(loader), "__version__", None)
    if not getattr(model, "inputs", None):
        raise ModelLoadError(
            f"model {getattr(model, 'name', '?')!r}: expected a built Keras "
            f"model with known inputs (give it an Input), got none"
        )
    return LoadedKeras(
        model, Path(str(getattr(model, "name", "model"))), "memory", loader, version, None
    )
