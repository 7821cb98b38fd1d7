"""Describe an ONNX model file: tensors, opset, metadata and checksums (runtime side)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from portanet import schema as meta
from portanet._files import sha256_of
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
        "images": {name: spec.describe() for name, spec in model.schema.images.items()},
        "vocabulary": dict(model.schema.vocabulary),
        "variant": variant_proof(model.metadata),
        "metadata": model.metadata,
    }


def variant_proof(metadata: dict[str, Any]) -> str | None:
    """For a file ``portanet optimize`` transformed, its own measured error in one line (the
    ``portanet.parity`` it carries is the base export's); ``None`` for any other file."""
    lineage = metadata.get(meta.LINEAGE)
    if not isinstance(lineage, dict) or not lineage.get("transforms"):
        return None
    proof = lineage.get("proof")
    if not isinstance(proof, dict):
        return (
            f"optimized ({lineage.get('candidate')}) without a recorded proof of its own: "
            f"the parity below is the base export's, not this file's"
        )
    own = proof.get("vs_float32") or {}
    keras = proof.get("vs_keras")
    parts = [f"max abs {own.get('max_abs'):.3g} vs float32"]
    if own.get("agreement") is not None:
        parts.append(f"{100 * own['agreement']:.2f}% labels unchanged")
    if keras:
        parts.append(f"max abs {keras.get('max_abs'):.3g} vs Keras")
        if keras.get("agreement") is not None:
            parts.append(f"{100 * keras['agreement']:.2f}% labels as Keras")
    else:
        parts.append("not compared with Keras")
    return (
        f"optimized variant {lineage.get('candidate')} of {lineage.get('base', {}).get('file')}: "
        f"{', '.join(parts)} on {proof.get('rows')} held-out rows (the portanet.parity below "
        f"is the base export's)"
    )
