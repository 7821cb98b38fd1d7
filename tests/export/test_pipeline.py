import dataclasses
import hashlib
import re

import numpy as np
import onnx
import pytest

from portanet import load
from portanet import schema as meta
from portanet.errors import ConversionError, InputError, ParityError
from portanet.export import export_model
from portanet.export.convert.keras_to_onnx import sanitize
from portanet.export.pipeline import STAGES
from portanet.options import ExportOptions
from portanet.reference.data import PIMA_FEATURES, load_pima


def _keras_predict(path, x):
    from portanet.export.keras.load import load_keras

    return np.asarray(load_keras(path).model(x, training=False))


def test_onnx_is_valid_with_readable_names_and_a_dynamic_batch(exported):
    proto = onnx.load(str(exported.path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["probability"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 8
    assert proto.opset_import[0].version == 17


def test_metadata_carries_schema_source_tools_parity_and_metrics(exported, trained):
    model = load(exported.path)
    md = model.metadata
    assert set(meta.ALL_KEYS) - {meta.LINEAGE, meta.PREPROCESSING} <= set(md)  # images only
    assert tuple(md[meta.SCHEMA]["feature_names"]) == PIMA_FEATURES
    assert md[meta.SCHEMA]["task"] == "binary_classifier" and md[meta.SCHEMA]["threshold"] == 0.5
    assert md[meta.SOURCE]["sha256"] == hashlib.sha256(trained.path.read_bytes()).hexdigest()
    assert md[meta.SOURCE]["loader"] == "keras" and md[meta.TOOLS]["opset"] == 17
    assert md[meta.PARITY]["passed"] is True
    assert md[meta.METRICS]["test"]["roc_auc"] == pytest.approx(trained.metrics["test"]["roc_auc"])


def test_gate_covers_all_768_rows_and_random_batches(exported):
    report = exported.report
    assert report.samples == 768 + 1 + 7 + 1024
    assert "768 rows of pima-indians-diabetes.csv" in report.inputs_from
    out = report.outputs[0]
    assert out.max_abs <= 1e-5 and out.violations == 0 and out.flips == 0
    assert out.decisions == report.samples


@pytest.mark.parametrize("rows", [1, 7, 768, 1024], ids=lambda r: f"batch{r}")
def test_trained_model_parity_per_batch_size(exported, trained, rows):
    features = load_pima().features
    rng = np.random.default_rng(rows)
    x = (
        features[:rows]
        if rows <= 768
        else rng.uniform(features.min(0), features.max(0), (rows, 8)).astype(np.float32)
    )
    onnx_out = load(exported.path).predict(x)
    assert onnx_out.shape == (rows, 1)
    assert np.abs(onnx_out - _keras_predict(trained.path, x)).max() <= 1e-5


@pytest.mark.parametrize("rows", [1, 7, 768, 1024], ids=lambda r: f"batch{r}")
def test_legacy_keras224_file_exports_with_parity(keras224_mlp, tmp_path, rows):
    result = export_model(keras224_mlp, tmp_path / "legacy.onnx")
    assert result.report and result.loaded.loader == "tf_keras"
    assert result.report.max_abs <= 1e-5
    features = load_pima().features
    x = features[:rows] if rows <= 768 else np.tile(features, (2, 1))[:rows]
    got = load(result.path).predict(x)
    assert np.abs(got - _keras_predict(keras224_mlp, x)).max() <= 1e-5
    assert load(result.path).schema.task == "binary_classifier"


def test_default_output_sits_beside_the_source(standin_mlp):
    result = export_model(standin_mlp)
    assert result.path == standin_mlp.with_suffix(".onnx") and result.path.exists()


def test_no_verify_skips_the_gate_and_says_so_in_metadata(standin_mlp, tmp_path):
    result = export_model(standin_mlp, tmp_path / "m.onnx", verify=False)
    assert result.report is None
    assert load(result.path).metadata[meta.PARITY] == {"skipped": True}


def test_a_wrong_weight_fails_the_gate_and_writes_nothing(standin_mlp, tmp_path, monkeypatch):
    import portanet.export.pipeline as export_module

    real_convert = export_module.convert

    def perturbed(*args, **kwargs):
        converted = real_convert(*args, **kwargs)
        graph = converted.proto.graph
        init = max(graph.initializer, key=lambda t: len(onnx.numpy_helper.to_array(t)))
        array = onnx.numpy_helper.to_array(init).copy()
        array += 0.5
        init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
        return converted

    monkeypatch.setattr(export_module, "convert", perturbed)
    target = tmp_path / "bad.onnx"
    with pytest.raises(ParityError) as info:
        export_model(standin_mlp, target)
    assert re.search(r"- dense_\d+: max abs", str(info.value))
    assert not info.value.report.passed
    assert list(tmp_path.iterdir()) == []


def test_feature_names_option_and_opset_range(standin_mlp, tmp_path):
    names = [f"f{i}" for i in range(8)]
    result = export_model(standin_mlp, tmp_path / "named.onnx", feature_names=names, opset=13)
    assert load(result.path).feature_names == tuple(names)
    assert onnx.load(str(result.path)).opset_import[0].version == 13
    with pytest.raises(InputError, match="opset"):
        export_model(standin_mlp, tmp_path / "x.onnx", opset=99)
    with pytest.raises(InputError, match="feature names"):
        export_model(standin_mlp, tmp_path / "y.onnx", feature_names=["a", "b"])


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("dense_1_input", "dense_1_input"),
        ("input:0", "input"),
        ("my input/x", "my_input_x"),
        ("1st", "t_1st"),
    ],
    ids=["plain", "tensor-suffix", "spaces-slash", "leading-digit"],
)
def test_sanitize(raw, expected):
    assert sanitize(raw, set()) == expected


def test_sanitize_keeps_names_unique():
    taken: set[str] = set()
    assert [sanitize("a", taken), sanitize("a", taken)] == ["a", "a_1"]


def test_committed_reference_artifacts_are_consistent():
    from tests.helpers import COMMITTED_H5, COMMITTED_ONNX

    model = load(COMMITTED_ONNX)
    assert (
        model.metadata[meta.SOURCE]["sha256"]
        == hashlib.sha256(COMMITTED_H5.read_bytes()).hexdigest()
    )
    assert model.metadata[meta.PARITY]["passed"] is True


@pytest.mark.parametrize("name", ["keras240_style_depthwise.h5", "teachable_style_nested.h5"])
def test_keras24_standins_export_with_parity(name, tmp_path):
    """DepthwiseConv2D with ``groups`` and Teachable Machine's nested Sequential (Keras 2.4
    configs that Keras 3 refuses) export through tf-keras with parity on a bare clone."""
    from tests.helpers import FIXTURES

    result = export_model(FIXTURES / name, tmp_path / "m.onnx")
    assert result.loaded.loader == "tf_keras" and result.loaded.keras_version == "2.4.0"
    assert result.report and result.report.max_abs <= 1e-5


def test_export_walks_each_stage_once_in_order_and_records_its_time_and_memory(
    standin_mlp, tmp_path
):
    told = []
    result = export_model(standin_mlp, tmp_path / "m.onnx", on_stage=told.append)
    names = [r.name for r in result.stages]
    assert names == ["load", "convert", "check", "gate", "write"]
    assert told == [STAGES[n] for n in names]
    assert all(r.seconds > 0 and r.peak_rss > 0 for r in result.stages)
    assert result.peak_rss >= max(r.peak_rss for r in result.stages)
    recorded = load(result.path).metadata[meta.EXPORT_RUN]
    assert [s["stage"] for s in recorded["stages"]] == names[:-1]  # written during "write"
    assert recorded["peak_rss"] > 50 * 2**20 and recorded["memory_estimate"] > 0
    assert recorded["seconds"] == pytest.approx(
        sum(r.seconds for r in result.stages[:-1]), abs=0.01
    )
    # the report's charts come from the gate's compared outputs, not from the gate
    charts = load(result.path).metadata[meta.PARITY]["charts"]
    assert charts["outputs"][0]["elements"] == sum(n for _, _, n in result.report.batches)


def test_without_the_gate_no_gate_stage_runs(standin_mlp, tmp_path):
    result = export_model(standin_mlp, tmp_path / "m.onnx", verify=False)
    assert [r.name for r in result.stages] == ["load", "convert", "check", "write"]


def test_options_object_and_keywords_agree(standin_mlp, tmp_path):
    options = ExportOptions(opset=13, feature_names=[f"f{i}" for i in range(8)], verify=False)
    assert options.feature_names == tuple(f"f{i}" for i in range(8))  # frozen, hashable
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.opset = 12  # type: ignore[misc]
    by_object = export_model(standin_mlp, tmp_path / "a.onnx", options)
    by_keyword = export_model(standin_mlp, tmp_path / "b.onnx", options, opset=12)
    assert onnx.load(str(by_object.path)).opset_import[0].version == 13
    assert onnx.load(str(by_keyword.path)).opset_import[0].version == 12
    assert load(by_keyword.path).feature_names == options.feature_names
    with pytest.raises(TypeError):
        export_model(standin_mlp, tmp_path / "c.onnx", no_such_option=1)


def test_the_memory_preflight_refuses_before_converting(standin_mlp, tmp_path, monkeypatch):
    import portanet.export.preflight as preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(ConversionError) as info:
        export_model(standin_mlp, tmp_path / "m.onnx")
    message = str(info.value)
    assert "GB of memory (estimate)" in message and "0.0 GB available" in message
    assert "--no-memory-check" in message and info.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []
    result = export_model(standin_mlp, tmp_path / "m.onnx", memory_check=False, verify=False)
    assert result.memory_estimate is None and result.path.exists()


def test_auto_cleanup_is_onnxruntimes_unless_the_layerwise_table_is_asked_for():
    assert ExportOptions().cleanup == "auto"
    assert ExportOptions().graph_cleanup() == "onnxruntime"
    assert ExportOptions(layerwise=True).graph_cleanup() == "tf2onnx"  # TensorFlow's names kept
    assert ExportOptions(cleanup="tf2onnx").graph_cleanup() == "tf2onnx"
    assert ExportOptions(cleanup="onnxruntime", layerwise=True).graph_cleanup() == "onnxruntime"
