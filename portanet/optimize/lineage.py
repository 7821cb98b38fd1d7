"""The lineage an optimized file carries (``portanet.lineage``): where it came from, what was
done, what was measured — its own proof against float32 and Keras — and how it was written."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

from portanet import schema as meta
from portanet.optimize import transforms as tf_
from portanet.optimize.evaluate import BASE, real_gain
from portanet.optimize.timing import MARGIN

LINEAGE = meta.LINEAGE


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lineage_of(
    result: Any, base_path: Path, base_bytes: bytes, charts: dict[str, Any]
) -> dict[str, Any]:
    """The ``portanet.lineage`` metadata of the chosen variant: its base, transforms, budget,
    measured figures and own proof, portability, CPU and every candidate."""
    chosen = result.chosen
    assert chosen is not None
    return {
        "base": {"file": base_path.name, "sha256": _sha256(base_bytes)},
        "candidate": chosen.name,
        "transforms": list(chosen.transforms),
        "target": result.target,
        "budget": result.budget.to_dict(),
        "rows": result.to_dict()["rows"],
        "measured": {k: v for k, v in chosen.to_dict().items() if k not in ("name", "transforms")},
        "speedup": {
            f"batch_{result.batch}": chosen.speedup,
            f"batch_{result.throughput_batch}": chosen.throughput_speedup,
        },
        "candidates": [c.to_dict() for c in result.candidates],
        "tools": tf_.tool_versions(),
        "charts": charts,
        "proof": proof(result),
        "portability": chosen.portability,
        "nonstandard_ops": chosen.nonstandard_ops,
        "ops": result.ops,
        "goal": result.goal,
        "real_gain": chosen.name != BASE and real_gain(chosen, result.goal),
        "margin": MARGIN,
        "cpu": {"processor": platform.processor() or platform.machine(), "vnni": result.vnni},
        "int8": chosen.int8,
        "notes": result.notes,
    }


def proof(result: Any) -> dict[str, Any]:
    """The written variant's own measured error — against float32 and, when ``--source`` was
    given, against Keras — on the held-out rows (what ``inspect`` and ``report`` show instead
    of the base model's parity)."""
    chosen = result.chosen
    assert chosen is not None
    keras = None
    if chosen.keras_max_abs is not None:
        keras = {"max_abs": chosen.keras_max_abs, "agreement": chosen.keras_agreement}
    return {
        "rows": result.evaluation_rows,
        "vs_float32": {
            "max_abs": chosen.max_abs,
            "max_rel": chosen.max_rel,
            "mean_abs": chosen.mean_abs,
            "agreement": chosen.agreement,
        },
        "vs_keras": keras,
    }


def write_variant(
    chosen: Path | None, base_bytes: bytes, lineage: dict[str, Any], target: Path
) -> None:
    """The chosen file with the base model's metadata and the lineage, written atomically."""
    import onnx

    from portanet._files import write_bytes

    base = onnx.load_from_string(base_bytes)
    proto = onnx.load(str(chosen)) if chosen is not None else base
    kept = {p.key: p.value for p in base.metadata_props}
    kept.update({p.key: p.value for p in proto.metadata_props if p.key not in kept})
    kept[LINEAGE] = json.dumps(lineage, sort_keys=True)
    del proto.metadata_props[:]
    for key, value in kept.items():
        proto.metadata_props.add(key=key, value=value)
    write_bytes(target, proto.SerializeToString())
