"""Describe an ONNX model file: tensors, opset, metadata and checksums (runtime side)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from portanet import schema as meta
from portanet._files import sha256_of
from portanet.images import recipes_of
from portanet.runtime.guard import opset_imports
from portanet.runtime.load import load


def _opset(path: Path, metadata: dict[str, Any]) -> Any:
    tools = metadata.get(meta.TOOLS)
    if isinstance(tools, dict) and tools.get("opset"):
        return tools["opset"]
    return opset_imports(path.read_bytes(), str(path))  # a file portanet did not write


def describe(path: str | os.PathLike[str], *, sha256: str | None = None) -> dict[str, Any]:
    """Everything ``portanet inspect`` shows, as plain data (``sha256`` verifies the file)."""
    model = load(path, providers="cpu", sha256=sha256)
    session_meta = model.session.get_modelmeta()
    source = model.metadata.get(meta.SOURCE)
    return {
        "path": str(path),
        "sha256": sha256_of(path),
        "source_sha256": source.get("sha256") if isinstance(source, dict) else None,
        "inputs": [t.to_dict() for t in model.schema.inputs],
        "outputs": [t.to_dict() for t in model.schema.outputs],
        "opset": _opset(Path(path), model.metadata),
        "producer": session_meta.producer_name,
        "providers": model.providers,
        "task": model.schema.task,
        "labels": list(model.schema.labels) if model.schema.labels else None,
        "images": {
            name: recipe.describe()
            for name, recipe in recipes_of(model.metadata, model.schema.images).items()
        },
        "vocabulary": dict(model.schema.vocabulary),
        "metadata": model.metadata,
    }
