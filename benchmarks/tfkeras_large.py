"""A tf-keras (Keras 2) model over 2 GB exported with external data: time, peak RSS, parity.

    python benchmarks/tfkeras_large.py                      # ~2.2 GB of float32 weights
    python benchmarks/tfkeras_large.py --compare --layers 2 # the conversion alone, two ways

Builds, in a child process, a tf-keras MLP of ``--layers`` Dense(8192) layers (268 MB of
float32 kernel each) and a Dense(2048) head, saves it as ``.h5`` with tf-keras, then runs
``python benchmarks/_peak.py export`` on it (the whole ``portanet export``, parity gate
included) alone in another child. Printed: the weights, the export's wall time, its peak RSS
(``VmHWM``) against the issue's target of 8 × weights + 1.5 GB, the gate's largest absolute
error and the files written (graph and ``.onnx.data``).

``--compare`` measures the conversion alone on the same file in two children: portanet's path
(the large variables left unfrozen and streamed to external data, the protobuf limit lowered
in-process so a model under 2 GB takes it) against tf2onnx's own ``large_model=True``
(``tf2onnx.convert.from_keras``, which freezes every weight into the graph and writes a zip;
``np.product``, gone in NumPy 2, is aliased for it in that child only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tf_keras
layers, path = int(sys.argv[1]), sys.argv[2]
x = inputs = tf_keras.Input((8192,), name="features")
for index in range(layers):
    x = tf_keras.layers.Dense(8192, activation="tanh", name=f"dense_{index}")(x)
model = tf_keras.Model(inputs, tf_keras.layers.Dense(2048, name="head")(x))
model.save(path)
weights = sum(int(np.prod(w.shape)) * w.dtype.size for w in model.weights)
print(json.dumps({"weights": weights}))
"""

PORTANET_CONVERSION = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[2])
import portanet.export.convert.keras_to_onnx as conversion
from portanet.export.convert.external import StagedModel
from portanet.export.keras.load import load_keras
loaded = load_keras(sys.argv[1])
weights = conversion.weight_bytes(loaded.model)
conversion.PROTOBUF_LIMIT = conversion.GRAPH_HEADROOM + weights - 1  # take the >2 GB path
started = time.perf_counter()
converted = conversion.convert(loaded)
staged = StagedModel(converted.proto, converted.external, __import__("pathlib").Path(sys.argv[3]))
print(f"seconds={time.perf_counter() - started:.1f}")
staged.discard()
"""

TF2ONNX_LARGE_MODEL = """
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
np.product = np.prod  # tf2onnx 1.17's large_model path still calls it (removed in NumPy 2)
import tensorflow as tf
import tf_keras
import tf2onnx
model = tf_keras.models.load_model(sys.argv[1], compile=False)
started = time.perf_counter()
spec = [tf.TensorSpec((None, 8192), tf.float32, name="features")]
tf2onnx.convert.from_keras(model, input_signature=spec, large_model=True, output_path=sys.argv[3])
print(f"seconds={time.perf_counter() - started:.1f}")
os.remove(sys.argv[3])
"""


def peak_of(command: list[str], env: dict[str, str]) -> tuple[int, float, list[str], int]:
    """Run ``command``; its peak RSS (bytes, ``os.wait4``), wall seconds, output lines, code."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        log.seek(0)
        lines = [x for x in log.read().decode(errors="replace").splitlines() if x.strip()]
    return usage.ru_maxrss * 1024, seconds, lines, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8, help="Dense(8192) layers (268 MB each)")
    parser.add_argument("--folder", type=Path, default=None, help="where to write (a temp dir)")
    parser.add_argument("--compare", action="store_true", help="the conversion alone, two ways")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory(dir=args.folder) as temporary:
        folder = Path(temporary)
        source = folder / "mlp.h5"
        built = subprocess.run(
            [sys.executable, "-c", BUILD, str(args.layers), str(source)],
            capture_output=True,
            text=True,
            env=env,
        )
        if built.returncode != 0:
            raise SystemExit(f"could not build: {built.stderr.strip().splitlines()[-3:]}")
        weights = int(json.loads(built.stdout.strip().splitlines()[-1])["weights"])
        print(f"tf-keras MLP, {args.layers} × Dense(8192) + Dense(2048): {weights / 1e9:.2f} GB")
        if args.compare:
            for label, script in (
                ("portanet (unfrozen, external data)", PORTANET_CONVERSION),
                ("tf2onnx large_model=True", TF2ONNX_LARGE_MODEL),
            ):
                target = folder / ("mlp.onnx" if "portanet" in label else "mlp.zip")
                command = [sys.executable, "-c", script, str(source), str(REPO), str(target)]
                peak, seconds, lines, code = peak_of(command, env)
                inner = next((x for x in lines if x.startswith("seconds=")), "?")
                print(
                    f"{label}: exit {code}, conversion {inner}, process {seconds:.1f} s, "
                    f"peak RSS {peak / 2**30:.2f} GiB ({peak / weights:.1f}× the weights)"
                    + ("" if code == 0 else f"; {lines[-1:]}")
                )
            return
        target, report = folder / "out" / "mlp.onnx", folder / "report.json"
        target.parent.mkdir()
        command = [sys.executable, str(REPO / "benchmarks" / "_peak.py"), "export", str(source)]
        command += ["--output", str(target), "--report", str(report)]
        peak, seconds, lines, code = peak_of(command, env)
        vmhwm = next((x for x in reversed(lines) if x.startswith("peak_rss_mb=")), "?")
        recorded = json.loads(report.read_text()) if report.exists() else {}
        max_abs = max((float(o["max_abs"]) for o in recorded.get("outputs", [])), default=None)
        estimate = (recorded.get("export") or {}).get("memory_estimate")
        target_bytes = 8 * weights + 1.5e9
        files = {p.name: p.stat().st_size for p in target.parent.iterdir()}
        print(f"portanet export: exit {code}, {seconds:.1f} s wall, {vmhwm} (VmHWM)")
        print(
            f"peak RSS {peak / 1e9:.2f} GB = {peak / weights:.2f}× the weights; target "
            f"8 × {weights / 1e9:.2f} + 1.5 = {target_bytes / 1e9:.2f} GB: "
            f"{'inside' if peak <= target_bytes else 'OVER'}"
        )
        stages = (recorded.get("export") or {}).get("stages", [])
        peaks = ", ".join(
            f"{s['stage']} {s['peak_rss'] / 1e9:.2f} ({s['seconds']:.0f} s)" for s in stages
        )
        print(f"peak RSS (GB) at the end of each stage: {peaks or '-'}")
        if estimate:
            print(f"preflight estimate of what the conversion adds: {estimate / 1e9:.2f} GB")
        print(f"parity passed={recorded.get('passed')} max_abs={max_abs}")
        print(f"files: {files}")
        if code != 0:
            print("\n".join(lines[-5:]))


if __name__ == "__main__":
    main()
