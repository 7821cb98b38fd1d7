"""Read an untrusted HDF5 file in a child process first, with a time limit.

The HDF5 C library can crash or loop forever on corrupt files (a fuzz test here found a zeroed
block that makes reading an attribute hang). So before portanet (or Keras) opens an ``.h5`` in
its own process, a child opens it, walks every link and dataset (refusing external links,
external storage and virtual datasets without following them), reads every dataset and the root
attributes, and reports them as JSON. A child that crashes, hangs or fails makes the file a
:class:`ModelLoadError`; the parent never touches a file the child could not read.

Run as ``python -m portanet.export.keras.h5_probe FILE MAX_DATASET_BYTES``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portanet.errors import ModelLoadError, UnsafeModelError
from portanet.schema import H5_ROOT_ATTRIBUTES

DEFAULT_TIMEOUT_S = 60.0


@dataclass
class ProbeResult:
    """What the child read: root attributes (as text) and the first problem it found."""

    attributes: dict[str, str] = field(default_factory=dict)
    unsafe: str | None = None


def probe(path: Path, *, max_dataset_bytes: int, timeout: float = DEFAULT_TIMEOUT_S) -> ProbeResult:
    """Probe ``path`` in a child process; raise for crashes, hangs, unreadable or unsafe files."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "portanet.export.keras.h5_probe",
                str(path),
                str(max_dataset_bytes),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            f"{path}: expected a readable HDF5 file, but reading it did not "
            f"finish in {timeout:.0f} s (corrupt or hostile file)"
        ) from None
    if done.returncode < 0:
        raise ModelLoadError(
            f"{path}: expected a readable HDF5 file, but the HDF5 library "
            f"crashed reading it (signal {-done.returncode})"
        )
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        raise ModelLoadError(
            f"{path}: expected a readable HDF5 file, the probe failed: {done.stderr.strip()[-300:]}"
        ) from None
    if report.get("error"):
        raise ModelLoadError(
            f"{path}: expected a readable HDF5 model file, h5py says: {report['error']}"
        )
    result = ProbeResult(report.get("attributes", {}), report.get("unsafe"))
    if result.unsafe:
        raise UnsafeModelError(f"{path}: {result.unsafe}; refused")
    return result


def _inspect(path: str, max_dataset_bytes: int) -> dict[str, Any]:
    import h5py
    import numpy as np

    with h5py.File(path, "r") as handle:
        links: list[str] = []

        def visit_link(name: str, link: Any) -> None:
            if isinstance(link, h5py.ExternalLink):
                links.append(
                    f"HDF5 reads other files: external link {name!r} → {link.filename}:{link.path}"
                )

        handle.visititems_links(visit_link)
        if links:  # never follow an external link, not even to look at datasets
            return {"unsafe": links[0]}
        problems: list[str] = []

        def visit(name: str, item: Any) -> None:
            if not isinstance(item, h5py.Dataset) or problems:
                return
            nbytes = item.size * item.dtype.itemsize
            if item.external:
                problems.append(f"dataset {name!r} stores its data in {item.external[0][0]!r}")
            elif item.is_virtual:
                problems.append(f"dataset {name!r} is a virtual dataset over other files")
            elif item.dtype.hasobject or h5py.check_dtype(ref=item.dtype) is not None:
                problems.append(
                    f"dataset {name!r} holds {item.dtype} values (objects or "
                    f"references, not the numbers weights are made of)"
                )
            elif nbytes > max_dataset_bytes:
                problems.append(
                    f"dataset {name!r} declares {nbytes:,} bytes (limit {max_dataset_bytes:,})"
                )
            else:
                np.asarray(item[()])  # decode it all: corrupt chunks fail (or hang) here
            for key in item.attrs:
                item.attrs[key]

        handle.visititems(visit)
        if problems:
            return {"unsafe": problems[0]}
        for group in [handle, *[handle[k] for k in handle if isinstance(handle[k], h5py.Group)]]:
            for key in group.attrs:
                group.attrs[key]
        attributes = {}
        for key in H5_ROOT_ATTRIBUTES:
            if key in handle.attrs:
                raw = handle.attrs[key]
                attributes[key] = (
                    raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                )
        return {"attributes": attributes}


def main() -> None:
    """Child entry point: print one JSON line."""
    try:
        report = _inspect(sys.argv[1], int(sys.argv[2]))
    except Exception as exc:  # every h5py failure becomes a clean report for the parent
        report = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
