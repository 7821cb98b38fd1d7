"""Open an ONNX file for inference: guard checks, checksum, providers, threads, session."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from portanet.errors import ModelLoadError, UnsafeModelError, first_line
from portanet.runtime import providers as prov
from portanet.runtime.guard import DEFAULT_LIMITS, Limits, check_model_bytes
from portanet.runtime.model import Model

log = logging.getLogger("portanet")


def load(
    path: str | os.PathLike[str] | bytes,
    *,
    providers: str | Sequence[str] = "auto",
    strict: bool = False,
    threads: int | None = None,
    sha256: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Model:
    """Load an ONNX model for inference.

    ``providers``: ``"auto"`` (TensorRT/CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
    ``"tensorrt"`` or a list of onnxruntime provider names. With ``strict=True`` a requested
    provider that onnxruntime did not activate raises :class:`ModelLoadError` instead of the
    silent CPU fallback. ``threads`` defaults to the CPUs this process may use. ``sha256``, when
    given, must match the file's bytes (else :class:`UnsafeModelError`). Before onnxruntime sees
    the file, its size is checked against ``limits`` and every external-data reference must stay
    inside the model's folder.
    """
    source: Path | None = None
    if isinstance(path, (bytes, bytearray)):
        data = bytes(path)
    else:
        source = Path(path)
        if not source.exists():
            raise ModelLoadError(f"{source}: no such file (expected an .onnx model)")
        if source.is_dir():
            raise ModelLoadError(f"{source}: expected an .onnx file, got a directory")
        size = source.stat().st_size
        if size > limits.max_model_bytes:
            raise ModelLoadError(
                f"{source}: expected at most {limits.max_model_bytes:,} bytes "
                f"(Limits.max_model_bytes), got {size:,}"
            )
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"{source}: cannot read the file ({exc.strerror})") from exc
    if sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.strip().lower():
            raise UnsafeModelError(
                f"{source or 'model bytes'}: expected sha256 {sha256}, got "
                f"{digest}; refusing a file that is not the one expected"
            )
    external = check_model_bytes(
        data, str(source or "model bytes"), folder=source.parent if source else None, limits=limits
    )
    payload: bytes | str = str(source) if external and source else data
    origin = str(source) if source else "model bytes"
    chosen = prov.resolve(providers, ort.get_available_providers())
    options = prov.session_options(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # portanet reports a missing provider itself
            session = ort.InferenceSession(payload, sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own untyped errors for any bad file
        raise ModelLoadError(
            f"{origin}: expected a valid ONNX model, onnxruntime says: {first_line(exc)}"
        ) from exc
    try:
        model = Model(session, source)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelLoadError(
            f"{origin}: expected portanet metadata of the documented form, "
            f"got {type(exc).__name__}: {exc}"
        ) from exc
    active = model.providers
    wanted = [p for p in chosen if p != "CPUExecutionProvider"]
    if wanted and wanted[0] not in active:
        message = (
            f"{origin}: expected provider {wanted[0]}, onnxruntime is using {active} "
            f"(available here: {ort.get_available_providers()})"
        )
        if strict:
            raise ModelLoadError(message)
        log.warning(message)
    log.info("%s: running on %s", origin, active[0])
    return model
