"""Describe an ONNX model file: tensors, opset, metadata and checksums (runtime side)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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
    """Everything ``portanet inspect`` shows, as plain data (``sha256`` verifies the file);
    ``path`` is the file's name, not a path of this machine (what is shared stays portable)."""
    model = load(path, providers="cpu", sha256=sha256)
    session_meta = model.session.get_modelmeta()
    source = model.metadata.get(meta.SOURCE)
    return {
        "path": Path(path).name,
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
        "variant": variant_proof(model.metadata),
        "metadata": model.metadata,
    }


#: Lists longer than this are shown as a count in the readable summary.
SHORT_LIST = 8
#: Characters of one summary line, at most.
LINE_CHARS = 240


def _compact(value: Any) -> Any:
    """``value`` without what a reader cannot use: chart data dropped, long lists counted."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if k != "charts"}
    if isinstance(value, list):
        if len(value) > SHORT_LIST:
            return f"[{len(value)} values]"
        return [_compact(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def _parity(data: dict[str, Any]) -> str:
    outputs = data.get("outputs") or []
    worst = max((o.get("max_abs", 0.0) for o in outputs), default=0.0)
    flips = sum(o.get("flips") or 0 for o in outputs)
    verdict = "passed" if data.get("passed") else "FAILED"
    mode = data.get("tolerance_mode", "strict")
    return (
        f"{verdict} ({mode}): max abs {worst:.3g} over {data.get('samples', '?')} samples, "
        f"{flips} flipped decisions; inputs: {data.get('inputs_from', '?')}"
    )


def _metrics(data: dict[str, Any]) -> str:
    parts = []
    for split in ("validation", "test"):
        m = data.get(split)
        if isinstance(m, dict):
            figures = ", ".join(
                f"{k.replace('_', ' ')} {m[k]:.3f}"
                for k in ("accuracy", "roc_auc", "loss")
                if isinstance(m.get(k), (int, float))
            )
            parts.append(f"{split}: {figures} ({m.get('rows', '?')} rows)")
    return "; ".join(parts) or json.dumps(_compact(data))


def _source(data: dict[str, Any]) -> str:
    extra = ", ".join(
        f"{k.replace('_', ' ')} {data[k]}"
        for k in ("format", "keras_version", "loader")
        if data.get(k)
    )
    return f"{data.get('file', '?')} ({extra})" if extra else str(data.get("file", "?"))


def _lineage(data: dict[str, Any]) -> str:
    base = data.get("base") or {}
    measured = data.get("measured") or {}
    figures = ", ".join(
        f"{k.replace('_', ' ')} {v:.3g}"
        for k, v in measured.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    )
    return (
        f"{data.get('candidate', '?')} of {base.get('file', '?')} "
        f"(transforms: {', '.join(data.get('transforms') or []) or 'none'}); {figures}"
    )


def summary(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, one readable line) per portanet metadata entry of :func:`describe`'s ``info``:
    the parity verdict, training metrics, source, tools, lineage in words; anything else as
    compact JSON without chart data or long arrays (``inspect --json`` keeps everything)."""
    readers: dict[str, Callable[[dict[str, Any]], str]] = {
        meta.PARITY: _parity,
        meta.METRICS: _metrics,
        meta.SOURCE: _source,
        meta.LINEAGE: _lineage,
        meta.TOOLS: lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items())),
    }
    lines: list[tuple[str, str]] = []
    schema = info["metadata"].get(meta.SCHEMA)
    if isinstance(schema, dict) and schema.get("feature_names"):
        lines.append(("feature names", ", ".join(schema["feature_names"])))
    for key, value in info["metadata"].items():
        if key == meta.SCHEMA:
            continue  # shown above: inputs, outputs, labels, images, vocabulary
        label = key.removeprefix("portanet.")
        try:
            text = readers[key](value) if key in readers and isinstance(value, dict) else None
        except (TypeError, ValueError, AttributeError):
            text = None
        if text is None:
            text = value if isinstance(value, str) else json.dumps(_compact(value))
        lines.append((label, text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"))
    return lines


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
