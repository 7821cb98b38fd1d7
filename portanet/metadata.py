"""The metadata keys portanet writes into every exported ``.onnx`` file, and how to read them.

Values are strings; structured values are JSON. Reading works from onnxruntime's
``custom_metadata_map`` so the runtime side never needs the ``onnx`` package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from portanet.errors import ModelLoadError
from portanet.spec import ModelSchema

VERSION = "portanet.version"
SCHEMA = "portanet.schema"
SOURCE = "portanet.source"
TOOLS = "portanet.tools"
PARITY = "portanet.parity"
METRICS = "portanet.metrics"

#: Keys whose values are JSON documents.
JSON_KEYS = (SCHEMA, SOURCE, TOOLS, PARITY, METRICS)
ALL_KEYS = (VERSION, *JSON_KEYS)


def encode(values: Mapping[str, Any]) -> dict[str, str]:
    """Turn metadata values into the strings ONNX ``metadata_props`` hold (JSON for structures)."""
    encoded: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        encoded[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return encoded


def decode(raw: Mapping[str, str], *, origin: str = "model") -> dict[str, Any]:
    """Parse the JSON values of a raw metadata map; other keys pass through as strings."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JSON_KEYS:
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ModelLoadError(
                    f"{origin}: metadata key {key!r} should hold JSON, got {value[:60]!r} ({exc})"
                ) from exc
        else:
            decoded[key] = value
    return decoded


def schema_from(decoded: Mapping[str, Any]) -> ModelSchema | None:
    """The :class:`ModelSchema` stored under ``portanet.schema``, if any."""
    data = decoded.get(SCHEMA)
    return ModelSchema.from_dict(data) if isinstance(data, dict) else None
