"""``portanet optimize --target cpu`` on the real Teachable Machine MobileNet (the legacy
fixture), with real photographs as data: 224×224 patches cropped from scikit-learn's two sample
photos. Every speed-up is a ratio against the plain export timed in the same run (candidates
alternate); three runs give ranges.

    .venv/bin/python benchmarks/optimize_mobilenet.py            # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/optimize_mobilenet.py --runs 1 --seconds 1 --patches 200

Also writes the chosen model's bench JSON and HTML report, and (with Playwright and Debian's
chromium) a screenshot of the report: ``--screenshot docs/report-mobilenet.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "data" / "legacy-h5" / "keras240_teachable_mobilenet.h5"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def photo_patches(count: int, seed: int = 0) -> np.ndarray:
    """``count`` 224×224 patches of random size (160–420 px, nearest-neighbour resized) from the
    two photos scikit-learn ships, scaled as Teachable Machine does: pixels / 127.5 − 1."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(seed)
    patches = np.empty((count, 224, 224, 3), dtype=np.float32)
    for i in range(count):
        image = images[i % len(images)]
        side = int(rng.integers(160, min(image.shape[:2]) + 1))
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        index = (np.arange(224) * side / 224).astype(int)
        crop = image[top : top + side, left : left + side][index][:, index]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        patches[i] = crop / 127.5 - 1.0
    return patches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--patches", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per candidate")
    parser.add_argument("--max-abs", type=float, default=math.inf)
    parser.add_argument("--min-agreement", type=float, default=0.99)
    parser.add_argument(
        "--try", dest="transforms", default="ort,slim,fp16,int8-dynamic,int8-static"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the files")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()

    from rich.console import Console

    from portanet.cli.optimize import candidates_table
    from portanet.errors import ParityError
    from portanet.export import export_model
    from portanet.optimize import bench_model, optimize_model
    from portanet.report import write_report

    console = Console(width=160)
    folder = args.out or Path(tempfile.mkdtemp(prefix="portanet-mobilenet-"))
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "teachable_mobilenet.onnx"
    export_model(FIXTURE, onnx_path)
    rows = folder / "patches.npy"
    np.save(rows, photo_patches(args.patches))
    runs = []
    for _ in range(args.runs):
        try:
            result = optimize_model(
                onnx_path,
                rows,
                output=folder / "optimized.onnx",
                max_abs=args.max_abs,
                min_agreement=args.min_agreement,
                target="cpu",
                transforms=args.transforms,
                seconds=args.seconds,
                calibration_rows=100,
                throughput_batch=32,
            )
        except ParityError as exc:
            result = exc.report
        console.print(candidates_table(result))
        runs.append(result)
    names = [c.name for c in runs[0].candidates]
    console.print(
        f"\nranges over {len(runs)} runs ({runs[0].evaluation_rows} held-out patches, "
        f"{runs[0].calibration_rows} calibration patches, budget "
        f"{runs[0].budget.describe()}):"
    )
    for name in names:
        found = [next(c for c in r.candidates if c.name == name) for r in runs]
        if any(c.error for c in found):
            console.print(f"  {name:20s} failed: {found[0].error}")
            continue
        speed = [c.speedup for c in found]
        thr = [c.throughput_speedup for c in found]
        agree = [c.agreement for c in found]
        console.print(
            f"  {name:20s} batch 1 ×{min(speed):.2f}–{max(speed):.2f}   batch "
            f"{runs[0].throughput_batch} ×{min(thr):.2f}–{max(thr):.2f}   top-1 "
            f"agreement {100 * min(agree):.1f}–{100 * max(agree):.1f} %   max abs "
            f"{max(c.max_abs for c in found):.3g}",
            highlight=False,
        )
    console.print(
        "chosen per run: " + ", ".join(r.chosen.name if r.chosen else "none" for r in runs)
    )
    chosen = runs[-1].output or onnx_path
    bench = bench_model(chosen, source=FIXTURE, batch_sizes=[1, 8, 32], seconds=args.seconds)
    (folder / "bench.json").write_text(json.dumps(bench.to_dict(), indent=2))
    report = write_report(chosen, folder / "report.html", bench=folder / "bench.json")
    console.print(f"files in {folder}; report {report}")
    if args.screenshot:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.resolve().as_uri())
            page.screenshot(path=str(args.screenshot), full_page=True)
            browser.close()
        console.print(f"screenshot {args.screenshot}")


if __name__ == "__main__":
    main()
