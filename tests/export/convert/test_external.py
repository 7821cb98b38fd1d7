"""Models over 2 GB: weights in one external-data file beside the graph, a relative path inside
the output folder, loaded back through ``portanet.load`` (and its guard), gate included."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

import portanet
from portanet.export.keras.load import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

pytestmark = pytest.mark.usefixtures("seeded")


def _uniform(shape, dtype=None):
    """Seeded uniform values made in place (Keras' own initializer makes temporaries)."""
    values = np.empty(shape, dtype=np.float32)
    np.random.default_rng(0).random(out=values, dtype=np.float32)
    values -= np.float32(0.5)
    return values


def _ids_model(vocabulary: int, width: int, tables: int = 1):
    """Ids → ``tables`` embedding tables (summed) → mean over the sequence → Dense(3). Keras
    holds three copies of a variable while it creates it: several tables keep the peak low."""
    ids = keras.Input((6,), dtype="int32", name="ids")
    looked_up = [
        keras.layers.Embedding(
            vocabulary, width, name=f"table_{i}", embeddings_initializer=_uniform
        )(ids)
        for i in range(tables)
    ]
    x = looked_up[0] if tables == 1 else keras.layers.Add()(looked_up)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(3, name="score")(x), name="ids_model")


def _check_written(target, model, rows=16):
    data = target.with_name(target.name + ".data")
    assert data.is_file() and sorted(
        p.name for p in target.parent.iterdir() if not p.name.startswith("source")
    ) == sorted([target.name, data.name])
    proto = onnx.load(str(target), load_external_data=False)
    locations = {
        e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {data.name}  # one file, relative, inside the output folder
    runtime = portanet.load(target)
    assert runtime.metadata["portanet.parity"]["passed"] is True
    ids = np.random.default_rng(5).integers(0, model.layers[1].input_dim, (rows, 6))
    expected = np.asarray(model(ids.astype(np.int32)))
    assert np.abs(runtime.predict(ids.astype(np.int32)) - expected).max() < 1e-5
    return proto, data


def test_a_model_over_the_limit_gets_external_data(tmp_path, monkeypatch):
    import portanet.export.convert.keras_to_onnx as conversion
    from portanet.export import export_model

    model = _ids_model(4000, 96)  # a 1.5 MB table; the limit is lowered to just under it
    weights = conversion.weight_bytes(model)
    monkeypatch.setattr(conversion, "PROTOBUF_LIMIT", conversion.GRAPH_HEADROOM + weights - 1)
    out = tmp_path / "out"
    out.mkdir()
    result = export_model(model, out / "ids.onnx", layerwise=True)
    assert result.report.passed and result.report.layerwise.first_failure is None
    proto, data = _check_written(out / "ids.onnx", model)
    assert (out / "ids.onnx").stat().st_size < 100_000 and data.stat().st_size >= 4000 * 96 * 4


@pytest.mark.slow
def test_a_real_model_just_over_2_gb(tmp_path):
    """Two 255,000 × 1,024 float32 tables: 2.09 GB, over what one .onnx file may hold (peak
    memory about 5 GB, 2.1 GB of disk, ~20 s)."""
    from portanet.export import export_model

    model = _ids_model(255_000, 1024, tables=2)
    out = tmp_path / "out"
    out.mkdir()
    result = export_model(model, out / "big.onnx")
    assert result.report.passed
    proto, data = _check_written(out / "big.onnx", model)
    assert data.stat().st_size > 2**31 - 2**26
    os.remove(data)  # 2 GB of temporary disk back at once
