"""Every ``keras.applications`` network Keras 3.15 can build with ``weights=None``, saved the
way users save it — ``model.save("x.h5")`` (a file Keras itself cannot reload for MobileNetV3
and ConvNeXt) and ``model.save("x.keras")`` — exports with parity. One row per network.

Each network is built once at the smallest input it accepts (32×32, or the minimum Keras names
for Inception and Xception, said in the row), calibrated like a trained network
(``tests.helpers.calibrate``), saved in both formats; the ``.h5`` is exported through the gate
and the ``.keras`` file is verified against that ONNX model through the same gate (one
conversion per network keeps the table inside CI's time). Random-weight deep networks amplify
float32 rounding, so the table runs at atol 1e-3 in the noise-floor tolerance mode: an error
beyond that must be the network's own measured sensitivity, never a conversion fault.

Marked ``slow``; set ``PORTANET_APPS_LOG`` to a file to collect ``{id, max_abs, seconds}``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import pytest

from tests.helpers import calibrate
from portanet.export.keras.load import quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seeded")]

#: Inputs smaller than 32×32 are refused by these networks; their own minimum is used instead.
MINIMUM_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}


@dataclass(frozen=True)
class App:
    """One keras.applications network and the input size it is built at."""

    name: str
    size: int = 32

    @property
    def note(self) -> str:
        return "" if self.size == 32 else f"built at {self.size}×{self.size}: Keras refuses " \
                                          f"inputs under {self.size}×{self.size}"


APPS = [App(name, MINIMUM_SIZE.get(name, 32)) for name in (
    "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtSmall", "ConvNeXtTiny", "ConvNeXtXLarge",
    "DenseNet121", "DenseNet169", "DenseNet201",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3", "EfficientNetB4",
    "EfficientNetB5", "EfficientNetB6", "EfficientNetB7",
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
    "EfficientNetV2L", "EfficientNetV2M", "EfficientNetV2S",
    "InceptionResNetV2", "InceptionV3", "MobileNet", "MobileNetV2", "MobileNetV3Large",
    "MobileNetV3Small", "NASNetLarge", "NASNetMobile", "ResNet101", "ResNet101V2", "ResNet152",
    "ResNet152V2", "ResNet50", "ResNet50V2", "VGG16", "VGG19", "Xception")]


def test_the_table_lists_every_application_keras_has():
    """Nothing is skipped silently: a network added to keras.applications fails this test."""
    available = {name for name in dir(keras.applications) if name[:1].isupper()}
    assert {a.name for a in APPS} == available


def _log(row: dict) -> None:
    path = os.environ.get("PORTANET_APPS_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")


@pytest.mark.parametrize("app", [pytest.param(a, id=f"{a.name}-{a.size}") for a in APPS])
def test_application_saved_as_h5_and_keras_exports_with_parity(app: App, tmp_path):
    from portanet.export import export_model
    from portanet.export.verify.compare import NOISE_FACTOR, NOISE_FLOOR
    from portanet.export.verify.gate import verify

    started = time.perf_counter()
    model = getattr(keras.applications, app.name)(weights=None, classes=10,
                                                  input_shape=(app.size, app.size, 3))
    calibrate(model)
    h5, zipped = tmp_path / f"{app.name}.h5", tmp_path / f"{app.name}.keras"
    model.save(h5)
    model.save(zipped)
    del model
    keras.backend.clear_session()
    built = time.perf_counter() - started

    target = tmp_path / f"{app.name}.onnx"
    result = export_model(h5, target, atol=1e-3, tolerance_mode=NOISE_FLOOR)
    assert result.loaded.loader == "keras" and result.loaded.keras_version == keras.__version__
    exported = time.perf_counter() - started - built
    zipped_report = verify(zipped, target, atol=1e-3, tolerance_mode=NOISE_FLOOR)

    rows = []
    for fmt, report in (("h5", result.report), ("keras", zipped_report)):
        assert report.passed and report.samples >= 24
        for output in report.outputs:
            assert output.unexplained == 0 and output.elements > 0
            bound = max(1e-3 + 1e-4, NOISE_FACTOR * (output.noise_floor or 0.0))
            assert output.max_abs <= bound, output.describe_failure(report.where)
        rows.append({"format": fmt, "max_abs": report.max_abs,
                     "explained": sum(o.explained for o in report.outputs)})
    _log({"id": app.name, "size": app.size, "note": app.note, "rows": rows,
          "seconds": {"build_save": round(built, 1), "export_h5": round(exported, 1),
                      "verify_keras": round(time.perf_counter() - started - built - exported,
                                            1)}})
