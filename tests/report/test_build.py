"""portanet.report.build (``portanet report``): one self-contained page, opened in a real
headless Chromium; bench files checked before they are drawn."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cli

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
SECTIONS = {"card": 0, "parity": 3, "training": 1, "optimization": 3, "bench": 1}


def _need_browser() -> None:
    """Skip without Chromium and Playwright, unless CI (PORTANET_CI=1) where it must fail."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (install it with scripts/ci_system_deps.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if missing:
        message = "headless browser test needs " + " and ".join(missing)
        if os.environ.get("PORTANET_CI") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def full_report(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A page with every section: the trained Pima network exported with the layerwise
    comparison, optimized, benchmarked against Keras."""
    from portanet.export import export_model
    from portanet.optimize import bench_model, optimize_model
    from portanet.reference.data import pima_csv_path
    from portanet.report import write_report

    folder = tmp_path_factory.mktemp("report")
    onnx_path = folder / "pima_mlp.onnx"
    export_model(trained.path, onnx_path, layerwise=True)
    optimized = optimize_model(
        onnx_path,
        pima_csv_path(),
        output=folder / "pima_mlp.opt.onnx",
        max_abs=0.05,
        min_agreement=0.97,
        seconds=0.3,
        transforms="ort,slim,int8-static",
        transformed_only=True,
    )
    bench = bench_model(
        optimized.output, source=trained.path, batch_sizes=[1, 32, 512], seconds=0.3
    )
    bench_path = folder / "bench.json"
    bench_path.write_text(json.dumps(bench.to_dict()))
    return write_report(optimized.output, folder / "pima.report.html", bench=bench_path)


def test_report_renders_every_section_in_headless_chromium(full_report):
    _need_browser()
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(full_report.as_uri(), wait_until="load")
            for section, charts in SECTIONS.items():
                box = page.locator(f"section#{section}")
                assert box.is_visible(), section
                assert box.locator(".empty").count() == 0, f"{section} shows a placeholder"
                svgs = box.locator("svg.chart")
                assert svgs.count() >= charts, f"{section}: {svgs.count()} charts"
                for i in range(svgs.count()):
                    size = svgs.nth(i).bounding_box()
                    assert size and size["width"] > 250 and size["height"] > 90, (section, size)
                    assert svgs.nth(i).locator("path").count() > 10  # drawn, not empty
            text = page.inner_text("body")
            for needle in (
                "parity gate passed",
                "trained by portanet",
                "int8-static",
                "glucose",
                "test accuracy",
                "Keras p50",
                "base sha256",
            ):
                assert needle in text, needle
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert requests == [full_report.as_uri()]  # the page itself, nothing else
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_report_of_a_plain_export_says_what_is_missing(exported, tmp_path):
    target = tmp_path / "plain.html"
    result = run_cli("report", str(exported.path), "--output", str(target))
    assert result.returncode == 0, result.stderr.decode()
    html = target.read_text()
    assert "This file was not optimized" in html and "No benchmark attached" in html
    assert html.count('class="chart"') >= 3  # training curves and the parity charts
    assert "<script" not in html and not re.search(r"url\((?!#)", html) and "@import" not in html
    assert not re.search(r'(src|href)\s*=\s*"(?!#)', html)  # only in-page links


def test_strings_from_the_model_file_are_escaped(trained, tmp_path):
    from portanet.export import export_model
    from portanet.report import write_report

    hostile = ["<script>alert(1)</script>", "a&b", "c", "d", "e", "f", "g", "h"]
    path = tmp_path / "hostile.onnx"
    export_model(trained.path, path, feature_names=hostile, verify=False)
    html = write_report(path).read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a&amp;b" in html
    assert "<script" not in html
    assert "The parity gate was skipped" in html


def test_bad_bench_file_exits_2(exported, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text('{"onnx": []}')
    result = run_cli(
        "report", str(exported.path), "--bench", str(bench), "--output", str(tmp_path / "r.html")
    )
    assert result.returncode == 2
    assert f"{bench}: expected a bench report with an 'onnx' list" in result.stderr.decode()
    assert not (tmp_path / "r.html").exists()


def test_report_of_an_optimized_variant_shows_its_own_proof(full_report):
    import html as html_

    import portanet
    from portanet.optimize.optimize import LINEAGE

    page = html_.unescape(re.sub(r"<[^>]+>", " ", full_report.read_text()))
    text = " ".join(page.split())
    lineage = json.loads(
        portanet.load(full_report.parent / "pima_mlp.opt.onnx")
        .session.get_modelmeta()
        .custom_metadata_map[LINEAGE]
    )
    proof = lineage["proof"]
    assert lineage["transforms"] and proof["rows"] > 0
    assert "optimized variant:" in text and "This variant's own proof" in text
    assert "These are the figures of the base export pima_mlp.onnx" in text
    assert "not of this file" in text
    agreement = f"{100 * proof['vs_float32']['agreement']:.2f} % labels kept"
    assert agreement in text
    assert "not measured (optimize was run without --source)" in text
    assert "standard ONNX (any runtime)" in text


def test_bench_of_another_model_exits_2(full_report, exported, tmp_path):
    other = tmp_path / "other.json"
    result = run_cli(
        "bench", str(exported.path), "--batch-sizes", "1", "--seconds", "0.1", "--json"
    )
    assert result.returncode == 0, result.stderr.decode()
    data = json.loads(result.stdout)
    assert data["model_sha256"] == hashlib.sha256(exported.path.read_bytes()).hexdigest()
    other.write_text(result.stdout.decode())
    target = tmp_path / "r.html"
    optimized = full_report.parent / "pima_mlp.opt.onnx"
    refused = run_cli("report", str(optimized), "--bench", str(other), "--output", str(target))
    assert refused.returncode == 2, refused.stderr.decode()
    assert "expected a bench of pima_mlp.opt.onnx" in refused.stderr.decode()
    assert "one of another model" in refused.stderr.decode() and not target.exists()
    accepted = run_cli("report", str(exported.path), "--bench", str(other), "--output", str(target))
    assert accepted.returncode == 0, accepted.stderr.decode()


def test_a_bench_file_is_checked_before_it_is_drawn(tmp_path):
    from portanet.errors import InputError
    from portanet.report.build import read_bench
    from tests.helpers import COMMITTED_ONNX

    with pytest.raises(InputError, match=r"none\.json: no such file \(expected portanet bench"):
        read_bench(tmp_path / "none.json")
    (tmp_path / "text.json").write_text("p50 was 3 ms")
    with pytest.raises(InputError, match=r"text\.json: expected the JSON that portanet bench"):
        read_bench(tmp_path / "text.json")
    row = {"batch": 1, "p50_ms": 0.1, "p90_ms": 0.2, "p99_ms": 0.3, "rows_per_s": 9000.0}
    (tmp_path / "short.json").write_text(json.dumps({"onnx": [{"batch": 1, "p50_ms": 0.1}]}))
    with pytest.raises(InputError, match="holding batch, p50_ms, p90_ms, p99_ms, rows_per_s"):
        read_bench(tmp_path / "short.json")
    digest = hashlib.sha256(COMMITTED_ONNX.read_bytes()).hexdigest()
    (tmp_path / "ok.json").write_text(json.dumps({"onnx": [row], "model_sha256": digest}))
    assert read_bench(tmp_path / "ok.json", COMMITTED_ONNX)["onnx"] == [row]
    (tmp_path / "old.json").write_text(json.dumps({"onnx": [row]}))
    with pytest.raises(InputError, match="a bench that records no model sha256"):
        read_bench(tmp_path / "old.json", COMMITTED_ONNX)
