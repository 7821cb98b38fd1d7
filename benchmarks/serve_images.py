"""Image requests through `portanet serve` against a bare onnxruntime loop, in one run.

The real Teachable Machine MobileNet (exported once with ``python -m portanet export`` into a
work folder), 16 closed-loop clients on keep-alive connections (benchmarks/serve_load.py), one
image per request:

* **bare onnxruntime**: the best of two arrangements on the same cores, no server: one
  single-threaded session per CPU each looping batch-1 runs in its own thread, and one session
  with a thread per CPU; images/s.
* **server, binary tensors** (float32 [1, 224, 224, 3], the binary tensor extension), batching
  on (the defaults) and off (``--max-batch-size 1``).
* **server, JSON** (the same tensor as JSON numbers).
* **server, encoded JPEG** (``BYTES``, decoded server-side with the recorded preparation).
* **floor: minimal Python server** (``benchmarks/floor_server.py``: uvloop + httptools and a
  session per CPU, binary tensors, no checks, batching or metrics): what any Python server
  reaches here with the same load generator on the same cores.

Prints images/s, p50/p99 and each server row's ratio to the bare loop. Every answer is checked
against local ``predict`` (close to 1e-5: batching may reorder float sums). The machine's cores
may be shared with other work: each row is run ``--runs`` times alternating order, and the
spread is printed. Usage::

    python benchmarks/serve_images.py [--seconds 10] [--runs 2] [--workdir /tmp/serve-bench]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_bench import Server, free_port, span  # noqa: E402
from serve_load import http_request, run_load  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEACHABLE = Path("/work/shared/data/legacy-h5/keras240_teachable_mobilenet.h5")
CLIENTS = 16
FLOOR_SERVER = Path(__file__).resolve().parent / "floor_server.py"


def export(workdir: Path, source: Path) -> Path:
    target = workdir / "teachable.onnx"
    if not target.exists():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run(
            [sys.executable, "-m", "portanet", "export", str(source), "--output", str(target)],
            check=True,
            env=env,
            cwd=REPO,
        )
    return target


def jpegs(count: int) -> list[bytes]:
    """Smooth colour fields with a little noise (photo-like sizes), 224×224 JPEG quality 90."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:224, 0:224] / 224.0
    out = []
    for _ in range(count):
        a, b, c = rng.random(3)
        base = np.stack([a + x * b, b + y * c, c + (x + y) * a / 2], axis=-1) % 1.0
        noise = rng.normal(0, 0.03, size=base.shape)
        pixels = (np.clip(base + noise, 0, 1) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def prepared(blobs: list[bytes], model) -> np.ndarray:
    from portanet.images import input_recipe
    from portanet.images.prepare import prepare_one

    spec, recipe = input_recipe(model.schema.inputs, model.image_recipes, None, "benchmark")
    return np.stack(
        [prepare_one(b, recipe, spec.numpy_dtype, f"image {i}") for i, b in enumerate(blobs)]
    )


def bare_loop(
    path: Path, images: np.ndarray, seconds: float, sessions: int, threads: int
) -> tuple[float, float]:
    """Images/s of ``sessions`` sessions (``threads`` intra-op threads each), each looping
    batch-1 runs in its own Python thread for ``seconds``, and images per CPU-second."""
    import onnxruntime as ort

    def session() -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    opened = [session() for _ in range(sessions)]
    name = opened[0].get_inputs()[0].name
    counts = [0] * sessions
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        s = opened[index]
        i = index
        while time.perf_counter() < deadline:
            s.run(None, {name: images[i % len(images)][None]})
            counts[index] += 1
            i += sessions

    for s in opened:  # warm up
        s.run(None, {name: images[0][None]})
    started, cpu = time.perf_counter(), cpu_seconds()
    deadline = started + seconds
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(sessions)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, used = time.perf_counter() - started, cpu_seconds() - cpu
    return sum(counts) / elapsed, sum(counts) / max(used, 1e-9)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (threads included), or of process ``pid``
    and its children (a server's workers)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def bodies(kind: str, model_name: str, input_name: str, output: str, images, blobs) -> list[bytes]:
    out = []
    for index in range(len(blobs)):
        outputs = [{"name": output, "parameters": {"binary_data": True}}]
        if kind in ("binary", "floor"):
            blob = np.ascontiguousarray(images[index][None], dtype="<f4").tobytes()
            tensor = {"datatype": "FP32", "shape": [1, *images.shape[1:]]}
        elif kind == "jpeg":
            blob = len(blobs[index]).to_bytes(4, "little") + blobs[index]
            tensor = {"datatype": "BYTES", "shape": [1]}
        else:
            doc = {
                "inputs": [
                    {
                        "name": input_name,
                        "shape": [1, *images.shape[1:]],
                        "datatype": "FP32",
                        "data": images[index].reshape(-1).tolist(),
                    }
                ],
                "outputs": outputs,
            }
            out.append(http_request(f"/v2/models/{model_name}/infer", orjson.dumps(doc)))
            continue
        head = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": input_name,
                        **tensor,
                        "parameters": {"binary_data_size": len(blob)},
                    }
                ],
                "outputs": outputs,
            }
        )
        out.append(
            http_request(
                f"/v2/models/{model_name}/infer",
                head + blob,
                headers={"Inference-Header-Content-Length": str(len(head))},
            )
        )
    return out


def checker(expected: np.ndarray):
    def check(index: int, status: int, body: bytes) -> bool:
        length = int(re.search(rb'"binary_data_size":(\d+)', body).group(1))
        got = np.frombuffer(body[-length:], dtype="<f4")
        return np.allclose(got, expected[index].reshape(-1), atol=1e-5)

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--model", type=Path, default=TEACHABLE)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--only", nargs="*", help="server rows to run (default: all)")
    args = parser.parse_args()
    if not args.model.exists():
        sys.exit(f"{args.model}: not found (the Teachable Machine MobileNet .h5 or an .onnx)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="portanet-serve-images-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = args.model if args.model.suffix == ".onnx" else export(workdir, args.model)

    import portanet

    model = portanet.load(path)
    blobs = jpegs(args.images)
    images = prepared(blobs, model)
    expected = np.stack([model.predict(images[i][None])[0] for i in range(len(images))])
    input_name = model.schema.inputs[0].name
    output = model.output_names[0]
    cpus = len(os.sched_getaffinity(0))
    print(
        f"{path.name}: {len(blobs)} JPEGs ({np.mean([len(b) for b in blobs]) / 1024:.0f} KB "
        f"mean), {CLIENTS} clients, {args.seconds:g} s runs x {args.runs}, {cpus} CPUs"
    )

    rows = {
        "binary, batching on": ("binary", ()),
        "binary, batching off": ("binary", ("--max-batch-size", "1")),
        "binary, 2 workers": ("binary", ("--workers", "2")),
        "JSON, batching on": ("json", ()),
        "JSON, 2 workers": ("json", ("--workers", "2")),
        "encoded JPEG, batching on": ("jpeg", ()),
        "floor: minimal Python server": ("floor", ()),
    }
    if args.only:
        rows = {k: v for k, v in rows.items() if any(o in k for o in args.only)}
    bare: list[float] = []
    bare_per_cpu: list[float] = []
    served: dict[str, list[dict]] = {k: [] for k in rows}
    check = checker(expected)
    for run in range(args.runs):
        per_core, per_core_cpu = bare_loop(path, images, min(args.seconds, 5.0), cpus, 1)
        one, one_cpu = bare_loop(path, images, min(args.seconds, 5.0), 1, cpus)
        bare.append(max(per_core, one))
        bare_per_cpu.append(per_core_cpu if per_core >= one else one_cpu)
        print(
            f"  run {run + 1} bare onnxruntime: {cpus} x 1-thread sessions {per_core:6.1f} "
            f"img/s ({per_core_cpu:.0f} per CPU-second), 1 x {cpus}-thread session "
            f"{one:6.1f} img/s ({one_cpu:.0f} per CPU-second)",
            flush=True,
        )
        order = list(rows.items()) if run % 2 == 0 else list(rows.items())[::-1]
        for label, (kind, flags) in order:
            port = free_port()
            command = [sys.executable, "-m", "portanet", "serve", str(path), "--port", str(port)]
            command += ["--name", "teachable", *flags]
            if kind == "floor":
                command = [sys.executable, str(FLOOR_SERVER), str(path), str(port)]
            server = Server(
                label,
                command,
                port,
                REPO,
                workdir / f"{kind}-{len(flags)}.log",
            )
            try:
                payload = bodies(kind, "teachable", input_name, output, images, blobs)
                run_load("127.0.0.1", port, payload, check, clients=CLIENTS, seconds=1.0)
                server_cpu, client_cpu = cpu_seconds(server.process.pid), cpu_seconds()
                result = run_load(
                    "127.0.0.1", port, payload, check, clients=CLIENTS, seconds=args.seconds
                )
                server_cpu = cpu_seconds(server.process.pid) - server_cpu
                client_cpu = cpu_seconds() - client_cpu
            finally:
                server.stop()
            summary = result.summary()
            summary["per_server_cpu"] = result.requests / max(server_cpu, 1e-9)
            summary["client_share"] = client_cpu / max(client_cpu + server_cpu, 1e-9)
            served[label].append(summary)
            print(
                f"  run {run + 1} {label:<28} {summary['req_s']:7.1f} img/s  p50 "
                f"{summary['p50_ms']:7.1f} ms  p99 {summary['p99_ms']:7.1f} ms  errors "
                f"{summary['errors']} wrong {summary['wrong']} {result.first_error[:80]}\n"
                f"      {summary['per_server_cpu']:.0f} images per server CPU-second; the load "
                f"generator took {summary['client_share']:.0%} of the CPU time",
                flush=True,
            )
    print()
    print(
        f"| {'setting':<28} | {'images/s':>14} | {'p99 ms':>14} | vs bare onnxruntime "
        f"| per CPU-second | vs bare, per CPU-second | load generator's CPU share |"
    )
    print(f"|{'-' * 30}|{'-' * 16}|{'-' * 16}|{'-' * 21}|{'-' * 16}|{'-' * 25}|{'-' * 28}|")
    print(
        f"| {'bare onnxruntime (best)':<28} | {span(bare, '.1f'):>14} | {'':>14} | {'1.00':>19} "
        f"| {span(bare_per_cpu, '.0f'):>14} | {'1.00':>23} | {'':>26} |"
    )
    for label, results in served.items():
        rates = [r["req_s"] for r in results]
        ratios = [r / b for r, b in zip(rates, bare, strict=True)]
        per_cpu = [r["per_server_cpu"] for r in results]
        cpu_ratios = [r / b for r, b in zip(per_cpu, bare_per_cpu, strict=True)]
        shares = [100 * r["client_share"] for r in results]
        print(
            f"| {label:<28} | {span(rates, '.1f'):>14} | "
            f"{span([r['p99_ms'] for r in results], '.0f'):>14} | {span(ratios, '.2f'):>19} "
            f"| {span(per_cpu, '.0f'):>14} | {span(cpu_ratios, '.2f'):>23} "
            f"| {span(shares, '.0f') + ' %':>26} |"
        )
    print()

    def per_run(top: str, bottom: str) -> str:
        if not served.get(top) or not served.get(bottom):
            return "not run"
        pairs = zip(served[top], served[bottom], strict=True)
        return ", ".join(f"{a['req_s'] / b['req_s']:.2f}" for a, b in pairs)

    print(
        "targets, per run: binary on / bare >= 0.80: "
        + ", ".join(
            f"{r['req_s'] / b:.2f}"
            for r, b in zip(served.get("binary, batching on", []), bare, strict=False)
        )
    )
    print(
        "  encoded JPEG / bare >= 0.60: "
        + ", ".join(
            f"{r['req_s'] / b:.2f}"
            for r, b in zip(served.get("encoded JPEG, batching on", []), bare, strict=False)
        )
    )
    print("  binary on / JSON <= 3: " + per_run("binary, batching on", "JSON, batching on"))
    binary_rows = [k for k in served if k.startswith("binary") and served[k]]
    json_rows = [k for k in served if k.startswith("JSON") and served[k]]
    if binary_rows and json_rows:
        best = [
            max(served[k][i]["req_s"] for k in binary_rows)
            / max(served[k][i]["req_s"] for k in json_rows)
            for i in range(args.runs)
        ]
        print("  best binary row / best JSON row <= 3: " + ", ".join(f"{b:.2f}" for b in best))
    print(
        "  binary on / floor (a minimal Python server): "
        + per_run("binary, batching on", "floor: minimal Python server")
    )
    print(
        "  binary on / binary off >= 1: " + per_run("binary, batching on", "binary, batching off")
    )


if __name__ == "__main__":
    main()
