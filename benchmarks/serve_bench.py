"""`portanet serve` against Seldon's MLServer 1.7 on the same machine, same load generator
(`serve_load.py`), same `.onnx` files, side by side; every response is checked against local
`portanet.load(...).predict`.

Setup (MLServer pins many packages, so it gets a venv of its own; 1.7.1 needs uvloop < 0.22,
see SeldonIO/MLServer#2286; it has no ONNX runtime, so this script writes a small MLModel
subclass over onnxruntime):

    python3 -m venv .venv-mlserver
    .venv-mlserver/bin/pip install "mlserver==1.7.1" "uvloop<0.22" onnxruntime numpy
    .venv/bin/pip install -e ".[all]"            # portanet with the serve and export extras
    .venv/bin/python benchmarks/serve_bench.py   # 3 runs; ~10 minutes on 2 cores

Models: the Pima MLP (`models/pima_mlp.onnx`, 1-row JSON requests, 64 closed-loop clients) and
a MobileNetV2 (224×224, random weights; built with Keras and exported with `portanet export`
on first use into --workdir), 16 clients. Each configuration is measured for --seconds after a
warm-up, configurations interleaved within a run; the table gives ranges over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import http_request, run_load  # noqa: E402

PIMA = REPO / "models" / "pima_mlp.onnx"
RUNTIME = '''
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    """Serve an .onnx file with onnxruntime (MLServer ships no ONNX runtime)."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = {threads}
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, options,
                                             providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {{i.name: NumpyCodec.decode_input(i).astype(np.float32, copy=False)
                 for i in payload.inputs}}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=[
            NumpyCodec.encode_output(name, value) for name, value in zip(self._outputs, results)])
'''


class _Skip(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"server on port {port} not ready in {timeout} s")


class Server:
    """A server subprocess in its own process group, stopped by its id."""

    def __init__(
        self,
        label: str,
        command: list[str],
        port: int,
        cwd: Path,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.label, self.port = label, port
        self.log = open(log, "wb")  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        wait_ready(port, self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def start_portanet(label: str, model: Path, workdir: Path, *args: str) -> Server:
    port = free_port()
    return Server(
        label,
        [sys.executable, "-m", "portanet", "serve", str(model), "--port", str(port), *args],
        port,
        REPO,
        workdir / f"{label}.log",
    )


def start_mlserver(
    label: str,
    model: Path,
    name: str,
    workdir: Path,
    mlserver: Path,
    *,
    workers: int,
    batch: int = 0,
    threads: int,
) -> Server:
    folder = workdir / label
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / "ortruntime.py").write_text(RUNTIME.format(threads=threads))
    port = free_port()
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": workers,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_settings: dict = {
        "name": name,
        "implementation": "ortruntime.OnnxRuntimeModel",
        "parameters": {"uri": str(model)},
    }
    if batch:
        model_settings.update(max_batch_size=batch, max_batch_time=0.002)
    (folder / name / "model-settings.json").write_text(json.dumps(model_settings))
    return Server(
        label,
        [str(mlserver), "start", str(folder)],
        port,
        folder,
        workdir / f"{label}.log",
        env={"PYTHONPATH": str(folder)},
    )


def build_mobilenet(workdir: Path) -> Path:
    """MobileNetV2 (224×224, random weights) exported through portanet's gate, once."""
    onnx_path = workdir / "mobilenetv2.onnx"
    if onnx_path.exists():
        return onnx_path
    keras_path = workdir / "mobilenetv2.keras"
    code = (
        "import keras; keras.applications.MobileNetV2(weights=None, input_shape=(224, 224,"
        f" 3)).save({str(keras_path)!r})"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "portanet",
            "export",
            str(keras_path),
            "--output",
            str(onnx_path),
            "--atol",
            "1e-3",
            "--rtol",
            "1e-3",
        ],
        check=True,
        env=env,
    )
    return onnx_path


def payloads(
    name: str, input_name: str, rows: np.ndarray, binary: bool, output: str = ""
) -> list[bytes]:
    """One request per row: JSON (flat data) or the binary tensor extension."""
    out = []
    for row in rows:
        shape = [1, *row.shape]
        if binary:
            blob = np.ascontiguousarray(row, dtype="<f4").tobytes()
            head = orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": input_name,
                            "shape": shape,
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": len(blob)},
                        }
                    ],
                    "outputs": [{"name": output, "parameters": {"binary_data": True}}],
                }
            )
            out.append(
                http_request(
                    f"/v2/models/{name}/infer",
                    head + blob,
                    headers={"Inference-Header-Content-Length": str(len(head))},
                )
            )
        else:
            data = row.reshape(-1).tolist()
            body = orjson.dumps(
                {"inputs": [{"name": input_name, "shape": shape, "datatype": "FP32", "data": data}]}
            )
            out.append(http_request(f"/v2/models/{name}/infer", body))
    return out


def checker(expected: np.ndarray, output: str):
    """Exact comparison of each JSON answer with local predict (float32 values)."""
    flat = [row.reshape(-1) for row in expected]

    def check(index: int, status: int, body: bytes) -> bool:
        doc = orjson.loads(body)
        got = next(o for o in doc["outputs"] if o["name"] == output)["data"]
        return np.array_equal(np.asarray(got, dtype=np.float32).reshape(-1), flat[index])

    return check


def binary_checker(expected: np.ndarray):
    flat = [np.ascontiguousarray(row.reshape(-1), dtype="<f4").tobytes() for row in expected]

    def check(index: int, status: int, body: bytes) -> bool:
        length = int(re.search(rb'"binary_data_size":(\d+)', body).group(1))
        return body[-length:] == flat[index]

    return check


def measure(
    servers: list[tuple[Server, list[bytes], object]], clients: int, seconds: float, runs: int
) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {s.label: [] for s, _, _ in servers}
    for run in range(runs):
        order = servers if run % 2 == 0 else servers[::-1]
        for server, bodies, check in order:
            run_load("127.0.0.1", server.port, bodies, check, clients=clients, seconds=1.0)
            result = run_load(
                "127.0.0.1", server.port, bodies, check, clients=clients, seconds=seconds
            )
            summary = result.summary()
            results[server.label].append(summary)
            print(
                f"  run {run + 1} {server.label:<34} {summary['req_s']:>9,.0f} req/s  p50 "
                f"{summary['p50_ms']:6.1f} ms  p99 {summary['p99_ms']:6.1f} ms  errors "
                f"{summary['errors']} wrong {summary['wrong']} {result.first_error[:80]}",
                flush=True,
            )
    return results


def span(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    return (
        format(low, fmt)
        if format(low, fmt) == format(high, fmt)
        else f"{format(low, fmt)}–{format(high, fmt)}"
    )


def table(title: str, results: dict[str, list[dict]]) -> list[str]:
    lines = [
        f"\n{title}",
        "| server | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, runs in results.items():
        lines.append(
            f"| {label} | {span([r['req_s'] for r in runs], ',.0f')} | "
            f"{span([r['p50_ms'] for r in runs], '.1f')} | "
            f"{span([r['p99_ms'] for r in runs], '.1f')} | "
            f"{sum(r['errors'] + r['wrong'] for r in runs)} |"
        )
    return lines


def ratio(results: dict, ours: str, others: list[str]) -> str:
    """Per run: ours / the fastest of others in that run."""
    values = [
        r[ours][i]["req_s"] / max(r[o][i]["req_s"] for o in others)
        for r in [results]
        for i in range(len(results[ours]))
    ]
    return span(values, ".2f") + "×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--mlserver", type=Path, default=REPO / ".venv-mlserver/bin/mlserver")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--skip-image", action="store_true")
    parser.add_argument("--skip-pima", action="store_true")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "portanet-serve-bench"
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    use_mlserver = not args.skip_mlserver
    if use_mlserver and not args.mlserver.exists():
        sys.exit(
            f"{args.mlserver} not found: install MLServer as the docstring says, or pass "
            f"--skip-mlserver"
        )
    import portanet
    from portanet.runtime.providers import usable_cpus

    threads = usable_cpus()
    print(f"{os.cpu_count()} CPUs ({threads} usable), load average {os.getloadavg()[0]:.2f}")
    report: dict[str, dict] = {}
    lines: list[str] = []

    # --- Pima MLP: 1-row JSON requests, 64 clients --------------------------------------
    csv = np.loadtxt(
        REPO / "portanet" / "reference" / "pima-indians-diabetes.csv",
        delimiter=",",
        skiprows=1,
        dtype=np.float64,
    )
    rows = csv[:256, :8].astype(np.float32)
    expected = portanet.load(PIMA).predict(rows)
    bodies = payloads("pima_mlp", "features", rows, binary=False)
    check = checker(expected, "probability")
    servers: list[Server] = []
    results: dict = {}
    try:
        if args.skip_pima:
            raise _Skip
        servers.append(start_portanet("portanet batching (64, 2 ms)", PIMA, args.workdir))
        servers.append(
            start_portanet("portanet no batching", PIMA, args.workdir, "--max-batch-size", "1")
        )
        if use_mlserver:
            servers.append(
                start_mlserver(
                    "mlserver in-process (workers 0)",
                    PIMA,
                    "pima_mlp",
                    args.workdir,
                    args.mlserver,
                    workers=0,
                    threads=threads,
                )
            )
            servers.append(
                start_mlserver(
                    "mlserver default (1 worker)",
                    PIMA,
                    "pima_mlp",
                    args.workdir,
                    args.mlserver,
                    workers=1,
                    threads=threads,
                )
            )
            servers.append(
                start_mlserver(
                    "mlserver adaptive batching",
                    PIMA,
                    "pima_mlp",
                    args.workdir,
                    args.mlserver,
                    workers=0,
                    batch=64,
                    threads=threads,
                )
            )
        print("Pima MLP, 1-row JSON requests, 64 clients")
        results = measure([(s, bodies, check) for s in servers], 64, args.seconds, args.runs)
    except _Skip:
        pass
    finally:
        for server in servers:
            server.stop()
    if results:
        report["pima"] = results
        lines += table("Pima MLP, 1-row JSON requests, 64 closed-loop clients", results)
    if use_mlserver and results:
        others = [k for k in results if k.startswith("mlserver")]
        lines.append(
            f"portanet batching / fastest MLServer (per run): "
            f"{ratio(results, 'portanet batching (64, 2 ms)', others)}; no batching: "
            f"{ratio(results, 'portanet no batching', others)}"
        )

    # --- MobileNetV2: 16 clients ------------------------------------------------------------
    if not args.skip_image:
        model = build_mobilenet(args.workdir)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(16, 224, 224, 3)).astype(np.float32)
        expected = portanet.load(model).predict(images)
        json_bodies = payloads("mobilenetv2", "input_layer", images, binary=False)
        binary_bodies = payloads(
            "mobilenetv2", "input_layer", images, binary=True, output="predictions"
        )
        json_check = checker(expected, "predictions")
        servers = []
        plan = []
        try:
            on = start_portanet(
                "portanet batching (16, 2 ms)", model, args.workdir, "--max-batch-size", "16"
            )
            off = start_portanet(
                "portanet no batching", model, args.workdir, "--max-batch-size", "1"
            )
            servers += [on, off]
            binary_check = binary_checker(expected)
            plan += [(on, json_bodies, json_check), (off, json_bodies, json_check)]
            for label, server in (
                ("portanet batching, binary", on),
                ("portanet no batching, binary", off),
            ):
                alias = Server.__new__(Server)
                alias.label, alias.port, alias.process = label, server.port, server.process
                plan.append((alias, binary_bodies, binary_check))
            if use_mlserver:
                for label, batch in (
                    ("mlserver adaptive batching (16)", 16),
                    ("mlserver in-process, no batching", 0),
                ):
                    server = start_mlserver(
                        label.split(" (")[0].replace(" ", "-").replace(",", ""),
                        model,
                        "mobilenetv2",
                        args.workdir,
                        args.mlserver,
                        workers=0,
                        batch=batch,
                        threads=threads,
                    )
                    server.label = label
                    servers.append(server)
                    plan.append((server, json_bodies, json_check))
            print("MobileNetV2 224×224, 1 image per request, 16 clients")
            results = measure(plan, 16, args.seconds, args.runs)
        finally:
            for server in servers:
                server.stop()
        report["mobilenetv2"] = results
        lines += table("MobileNetV2 224×224, 1 image per request, 16 closed-loop clients", results)
        lines.append(
            "portanet batching / no batching (JSON, per run): "
            f"{ratio(results, 'portanet batching (16, 2 ms)', ['portanet no batching'])}"
            "; binary: "
            + ratio(results, "portanet batching, binary", ["portanet no batching, binary"])
        )
        if use_mlserver:
            lines.append(
                "portanet batching (JSON) / fastest MLServer: "
                + ratio(
                    results,
                    "portanet batching (16, 2 ms)",
                    [k for k in results if k.startswith("mlserver")],
                )
            )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
