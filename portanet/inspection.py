"""Describe an ONNX model file: tensors, opset, metadata and checksum (runtime side)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from portanet import metadata as meta
from portanet.runtime import load


def sha256_of(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _opset(path: Path, metadata: dict[str, Any]) -> Any:
    tools = metadata.get(meta.TOOLS)
    if isinstance(tools, dict) and tools.get("opset"):
        return tools["opset"]
    try:  # only for files portanet did not write; onnx is an optional (export) dependency
        import onnx
    except ImportError:
        return "unknown (install portanet[export] to read it)"
    proto = onnx.load(str(path), load_external_data=False)
    return {o.domain or "ai.onnx": o.version for o in proto.opset_import}


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
        "metadata": model.metadata,
    }
