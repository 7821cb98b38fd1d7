"""portanet optimize on a real CNN trained on scikit-learn's digits (real files, real libraries)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import portanet
from portanet.optimize.data import load_rows, split_three
from portanet.optimize.optimize import LINEAGE
from portanet.optimize.timing import MARGIN
from tests.helpers import run_cli


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_int8_static_inside_the_agreement_budget_and_confirmed_independently(digits, tmp_path):
    out, report = tmp_path / "digits.int8.onnx", tmp_path / "optimize.json"
    result = run_cli(
        "optimize",
        str(digits.onnx_path),
        "--data",
        str(digits.rows_path),
        "--source",
        str(digits.keras_path),
        "--try",
        "int8-static",
        "--transformed-only",
        "--max-abs",
        "inf",
        "--min-agreement",
        "0.99",
        "--seconds",
        "0.3",
        "--output",
        str(out),
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "int8-static" in result.stdout.decode() and "chosen" in result.stdout.decode()
    table = json.loads(report.read_text())
    chosen = next(c for c in table["candidates"] if c["name"] == table["chosen"])
    assert table["chosen"] == "int8-static" and chosen["within_budget"]
    assert chosen["agreement"] >= 0.99 and chosen["keras_max_abs"] is not None

    # Independently: the written graph is quantized, and plain onnxruntime sessions of the base
    # and the written file reproduce the reported error on the held-out rows.
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    base = portanet.load(digits.onnx_path)
    calibration, selection, evaluation = split_three(load_rows(digits.rows_path, base), 128, seed=0)
    assert len(evaluation["pixels"]) == table["rows"]["evaluation"]
    assert len(selection["pixels"]) == table["rows"]["selection"] > 0
    # Calibration, selection and evaluation rows are three disjoint sets of the given rows.
    sets = [{r.tobytes() for r in part["pixels"]} for part in (calibration, selection, evaluation)]
    assert sum(map(len, sets)) == len({r.tobytes() for r in digits.rows})
    x = evaluation["pixels"]
    want = _session(digits.onnx_path).run(None, {"pixels": x})[0]
    got = _session(out).run(None, {"pixels": x})[0]
    # The int8 search judged its steps on the selection rows, not on the rows of the verdict:
    # the kept step's agreement is the written file's on the selection rows.
    info = chosen["int8"]
    kept = [
        s
        for s in info["steps"]
        if s["recipe"].startswith(info["recipe"]) and s["float_nodes"] == len(info["float_nodes"])
    ][-1]
    sx = selection["pixels"]
    on_selection = np.mean(
        _session(digits.onnx_path).run(None, {"pixels": sx})[0].argmax(1)
        == _session(out).run(None, {"pixels": sx})[0].argmax(1)
    )
    assert kept["agreement"] == pytest.approx(float(on_selection))
    assert float(np.abs(want - got).max()) == pytest.approx(chosen["max_abs"], rel=1e-5)
    agreement = float(np.mean(want.argmax(1) == got.argmax(1)))
    assert agreement == pytest.approx(chosen["agreement"]) and agreement >= 0.99
    # The int8 model still reads the digits it never saw: accuracy within 2 points of float32.
    order = np.random.default_rng(0).permutation(len(digits.rows))[128:]
    truth = digits.labels[np.sort(order[len(order) // 2 :])]
    assert float(np.mean(got.argmax(1) == truth)) >= float(np.mean(want.argmax(1) == truth)) - 0.02

    # Lineage metadata: the base file's sha256, the transforms, the budget and the figures;
    # the export's metadata is kept.
    written = portanet.load(out)
    lineage = json.loads(written.session.get_modelmeta().custom_metadata_map[LINEAGE])
    import hashlib

    assert lineage["base"]["sha256"] == hashlib.sha256(digits.onnx_path.read_bytes()).hexdigest()
    assert lineage["transforms"] == ["int8-static"]
    assert lineage["budget"] == {"max_abs": None, "min_agreement": 0.99}
    assert lineage["measured"]["agreement"] == chosen["agreement"]
    assert written.schema.task == "multiclass_classifier"
    assert written.metadata["portanet.parity"]["passed"] is True
    # The variant carries its own proof: its error against float32 and against Keras, which
    # Keras itself confirms here.
    import keras

    proof = lineage["proof"]
    assert proof["rows"] == len(x) and proof["vs_float32"]["max_abs"] == chosen["max_abs"]
    expected = keras.saving.load_model(digits.keras_path).predict(x, verbose=0)
    keras_diff = float(np.abs(expected.astype(np.float64) - got.astype(np.float64)).max())
    assert proof["vs_keras"]["max_abs"] == pytest.approx(keras_diff, rel=1e-4)
    keras_agree = float(np.mean(expected.argmax(1) == got.argmax(1)))
    assert proof["vs_keras"]["agreement"] == pytest.approx(keras_agree)
    assert lineage["portability"] == "standard" and lineage["ops"] == "standard"
    # inspect shows the variant's own numbers, not only the base's parity.
    shown = run_cli("inspect", str(out)).stdout.decode()
    assert "this file: optimized variant int8-static of digits.onnx" in shown
    assert f"max abs {proof['vs_keras']['max_abs']:.3g} vs Keras" in shown


def test_every_candidate_is_measured_and_the_fastest_inside_the_budget_wins(digits, tmp_path):
    from portanet.optimize import optimize_model

    result = optimize_model(
        digits.onnx_path,
        digits.rows_path,
        output=tmp_path / "best.onnx",
        max_abs=0.05,
        min_agreement=0.99,
        seconds=0.2,
    )
    names = [c.name for c in result.candidates]
    assert names == [
        "float32",
        "ort",
        "slim",
        "fp16",
        "int8-dynamic",
        "int8-static",
        "slim+fp16",
        "slim+int8-dynamic",
        "slim+int8-static",
    ]
    built = [c for c in result.candidates if c.error is None]
    assert len(built) == len(names), [c.error for c in result.candidates]
    for c in built:
        assert c.latency.batch == 1 and c.throughput.batch == 64
        assert c.latency.p50_s > 0 and c.throughput.rows_per_s > 0
    # Portability: onnxruntime's saved optimizations use its own fused operators; the
    # default (--ops standard) never chooses them.
    ort_candidate = next(c for c in built if c.name == "ort")
    assert ort_candidate.portability == "onnxruntime-only"
    assert any(op.startswith("com.microsoft:") for op in ort_candidate.nonstandard_ops)
    assert ort_candidate.excluded and "--ops any" in ort_candidate.excluded
    for c in built:
        if c.name not in ("ort",):
            assert c.nonstandard_ops == [] and c.portability == "standard", c.name
    # Honest speed-ups: a candidate wins only when the low end of its per-slice speed-ups
    # clears 1 + margin; otherwise float32 is kept and a note says so.
    gains = [
        c
        for c in built[1:]
        if c.within_budget and not c.excluded and c.speedup_spread[0] > 1 + MARGIN
    ]
    if gains:
        assert result.chosen is max(gains, key=lambda c: c.speedup)
    else:
        assert result.chosen.name == "float32"
        assert any("no real gain found" in n for n in result.notes)
    for c in built[1:]:
        low, high = c.speedup_spread
        assert low <= c.speedup <= high
    fp16 = next(c for c in built if c.name == "fp16")
    assert 0 < fp16.max_abs < 0.05  # float16 rounding is measured, not assumed away
    assert (tmp_path / "best.onnx").exists()


def test_no_candidate_inside_the_budget_exits_1_and_writes_nothing(digits, tmp_path):
    out = tmp_path / "never.onnx"
    result = run_cli(
        "optimize",
        str(digits.onnx_path),
        "--data",
        str(digits.rows_path),
        "--source",
        str(digits.keras_path),
        "--try",
        "fp16,int8-static",
        "--max-abs",
        "1e-12",
        "--seconds",
        "0.1",
        "--output",
        str(out),
    )
    assert result.returncode == 1, result.stderr.decode()
    assert not out.exists() and not list(tmp_path.iterdir())
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert "no candidate is inside the budget" in stderr and "nothing written" in stderr
    for name in ("float32", "fp16", "int8-static"):
        assert name in stdout
    assert "max abs vs Keras" in stdout  # each candidate's error is shown


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--try", "int4"], "expected some of ort, slim, fp16"),
        (["--target", "tpu"], "is not one of"),
        (["--min-agreement", "1.5"], "min agreement in [0, 1]"),
    ],
    ids=["unknown-transform", "unknown-target", "agreement-out-of-range"],
)
def test_bad_options_exit_2(digits, args, expected):
    result = run_cli("optimize", str(digits.onnx_path), "--data", str(digits.rows_path), *args)
    assert result.returncode == 2 and expected in result.stderr.decode()


def test_rows_of_the_wrong_shape_exit_2_naming_the_file(digits, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((20, 8, 8, 3), dtype=np.float32))
    result = run_cli("optimize", str(digits.onnx_path), "--data", str(bad))
    assert result.returncode == 2
    assert f"{bad}: input 'pixels' expects rows of shape (8, 8, 1)" in result.stderr.decode()
    assert "got an array of shape (20, 8, 8, 3)" in result.stderr.decode()


def test_fp16_of_an_embedding_model_builds_and_runs(tmp_path):
    """Keras' Embedding casts integer ids to float: the fp16 candidate keeps those casts."""
    from portanet.optimize import optimize_model
    from tests.builders import embedding_classifier

    _, path = embedding_classifier(tmp_path)
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).integers(0, 50, (96, 6)).astype(np.int32))
    result = optimize_model(
        path, ids, max_abs=0.01, transforms="fp16", transformed_only=True, seconds=0.1
    )
    (fp16,) = [c for c in result.candidates if c.name == "fp16"]
    assert fp16.error is None and fp16.within_budget and 0 < fp16.max_abs < 0.01


def test_a_library_error_is_reported_whole():
    from portanet.optimize.optimize import _message

    long = "Non-zero status code returned while running Cast node. " * 8 + "the end"
    assert _message(RuntimeError(long + "\n  detail")).endswith("the end detail")
    assert len(_message(RuntimeError(long))) > 400


def test_onnxruntime_only_candidates_need_ops_any_and_the_lineage_says_so(digits, tmp_path):
    from portanet.errors import ParityError
    from portanet.optimize import OptimizeOptions, optimize_model

    common = dict(max_abs=0.05, transforms="ort", transformed_only=True, seconds=0.1)
    options = OptimizeOptions(output=tmp_path / "no.onnx", report=tmp_path / "no.json", **common)
    with pytest.raises(ParityError) as refused:
        optimize_model(digits.onnx_path, digits.rows_path, options)
    assert "onnxruntime-only ops (com.microsoft:" in str(refused.value)
    assert "--ops any allows them" in str(refused.value) and not (tmp_path / "no.onnx").exists()
    # The JSON report is written even when nothing is chosen; without int8-static no rows are
    # set aside for the search.
    table = json.loads((tmp_path / "no.json").read_text())
    assert table["chosen"] is None and table["rows"]["selection"] == 0
    assert table["rows"]["evaluation"] == len(digits.rows) - 128
    # Keywords override the options object's fields.
    result = optimize_model(
        digits.onnx_path,
        digits.rows_path,
        options,
        output=tmp_path / "ort.onnx",
        report=None,
        ops="any",
    )
    assert result.chosen.name == "ort"
    lineage = result.lineage
    assert lineage["portability"] == "onnxruntime-only" and lineage["ops"] == "any"
    domains = {n.domain for n in onnx.load(str(tmp_path / "ort.onnx")).graph.node}
    assert "com.microsoft" in domains
    assert all(op.startswith("com.microsoft:") for op in lineage["nonstandard_ops"])


def test_timed_and_evaluated_batches_are_bounded_for_large_rows():
    from portanet.optimize.evaluate import chunk_rows
    from portanet.optimize.optimize import MAX_BATCH_VALUES, rows_bound

    images = {"x": np.zeros((40, 224, 224, 3), dtype=np.float32)}
    assert chunk_rows(images) == 8 and rows_bound(images) == MAX_BATCH_VALUES // (224 * 224 * 3)
    small = {"x": np.zeros((40, 8), dtype=np.float32)}
    assert chunk_rows(small) == 32 and rows_bound(small) == MAX_BATCH_VALUES // 8


def test_the_commands_take_their_defaults_from_the_options_objects():
    """``optimize`` and ``bench`` show the defaults the library objects define (once)."""
    import typer.main

    from portanet.cli.app import app
    from portanet.options import BenchOptions, OptimizeOptions

    command = typer.main.get_command(app)
    params = {
        name: {p.name: p.default for p in command.commands[name].params}  # type: ignore[attr-defined]
        for name in ("optimize", "bench")
    }
    opt, bench = OptimizeOptions(), BenchOptions()
    for field in ("max_abs", "min_agreement", "calibration_rows", "seconds", "throughput_batch"):
        assert params["optimize"][field] == getattr(opt, field), field
    assert params["optimize"]["try_"] == ",".join(opt.transforms)
    assert params["bench"]["batch_sizes"] == ",".join(map(str, bench.batch_sizes))
    assert params["bench"]["seconds"] == bench.seconds
