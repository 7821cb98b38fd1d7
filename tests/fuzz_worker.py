"""Child process for the fuzz test: loads one file per stdin line, answers one JSON line each.

Outcomes: ``ok`` (loaded, and an ONNX model also predicted), ``error`` (a PortanetError: the
clean refusal we want), ``traceback`` (any other exception: a bug). A crash or hang is seen by
the parent as a dead or silent child.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def attempt(path: str) -> dict:
    import numpy as np

    import portanet

    try:
        if path.endswith(".onnx"):
            model = portanet.load(path, providers="cpu", threads=1)
            spec = model.schema.inputs[0]
            shape = [d if isinstance(d, int) and 0 < d < 64 else 1 for d in spec.shape]
            if spec.dtype in ("float32", "float64", "int64", "int32"):
                model.run(
                    {
                        s.name: np.ones(
                            [d if isinstance(d, int) and 0 < d < 64 else 1 for d in s.shape],
                            dtype=s.dtype,
                        )
                        for s in model.schema.inputs
                    },
                    allow_nan=True,
                )
            del shape
        else:
            from portanet.export.keras.load import load_keras

            load_keras(path)
        return {"outcome": "ok"}
    except portanet.PortanetError as exc:
        return {"outcome": "error", "type": type(exc).__name__, "message": str(exc)[:200]}
    except Exception as exc:  # noqa: BLE001 - any other exception is what we count
        return {
            "outcome": "traceback",
            "type": type(exc).__name__,
            "message": "".join(traceback.format_exception(exc))[-1500:],
        }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--with-keras":
        from portanet.export.keras.load import quiet_tensorflow

        quiet_tensorflow()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(attempt(line.strip())), flush=True)


if __name__ == "__main__":
    main()
