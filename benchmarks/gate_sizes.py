"""Gate input sizes and a dynamic-size export: what the parity gate feeds per input size, and
MobileNetV3Small with unknown height/width exported end to end (time, peak RSS, parity).

Run: PYTHONPATH=. python benchmarks/gate_sizes.py   (needs the export extra; ~30 s on 2 cores)
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    from portanet.export.verify.inputs import gate_inputs
    from portanet.schema import ModelSchema, TensorSpec

    print("input shape      gate rows  input MB")
    for shape in [(8,), (224, 224, 3), (380, 380, 3), (600, 600, 3)]:
        schema = ModelSchema((TensorSpec("x", (None, *shape)),), (TensorSpec("y", (None, 1)),))
        feeds = gate_inputs(schema).feeds["x"]
        print(f"{str(shape):16} {len(feeds):9d}  {feeds.nbytes / 1e6:8.1f}")

    from portanet.export import export_model
    from portanet.export.keras.load import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(None, None, 3))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        report = export_model(model, Path(folder) / "mnv3.onnx").report
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"MobileNetV3Small (None, None, 3): passed={report.passed} max abs {report.max_abs:.2g} "
        f"on {report.samples} rows, {seconds:.1f} s, peak RSS {peak:.0f} MB\n"
        f"  {report.inputs_from}"
    )


if __name__ == "__main__":
    main()
