"""Every ``keras.applications`` network Keras 3.15 can build with ``weights=None``, saved the
way users save it — ``model.save("x.h5")`` (a file Keras itself cannot reload for MobileNetV3
and ConvNeXt) and ``model.save("x.keras")`` — is read back by portanet and exports with parity.

Each network is built once at the smallest input it accepts (32×32, or the minimum Keras names
for Inception and Xception, said in the row), calibrated like a trained network
(``tests.helpers.calibrate``) and saved in both formats. Both files must load through portanet
(safety checks first) and compute exactly what the network that wrote them computes; the
``.h5`` is exported through the gate and the ``.keras`` model is compared with that ONNX model
through the same gate. Random-weight deep networks amplify float32 rounding, so the gate runs at
atol 1e-3 in the noise-floor tolerance mode: an error beyond that must be the network's own
measured sensitivity, never a conversion fault.

CI time: the whole table takes far longer than CI allows on 2 cores (conversion and gate at
full size cost tens of times a network's weights in memory: ``benchmarks/applications.py``
and docs/conversion.md), so every CI run covers :data:`EXPORTED` — the smallest network of
each family: every architecture and every layer or operation Keras' applications use — in about
8 minutes; the other rows say why they
are skipped, and ``PORTANET_ALL_APPLICATIONS=1`` runs them all.
Marked ``slow``; ``PORTANET_APPS_LOG`` collects each row's figures and timings.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import pytest

from portanet.export.keras.load import quiet_tensorflow
from tests.helpers import calibrate

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
        return (
            ""
            if self.size == 32
            else f"built at {self.size}×{self.size}: Keras refuses "
            f"inputs under {self.size}×{self.size}"
        )


APPS = [
    App(name, MINIMUM_SIZE.get(name, 32))
    for name in (
        "ConvNeXtBase",
        "ConvNeXtLarge",
        "ConvNeXtSmall",
        "ConvNeXtTiny",
        "ConvNeXtXLarge",
        "DenseNet121",
        "DenseNet169",
        "DenseNet201",
        "EfficientNetB0",
        "EfficientNetB1",
        "EfficientNetB2",
        "EfficientNetB3",
        "EfficientNetB4",
        "EfficientNetB5",
        "EfficientNetB6",
        "EfficientNetB7",
        "EfficientNetV2B0",
        "EfficientNetV2B1",
        "EfficientNetV2B2",
        "EfficientNetV2B3",
        "EfficientNetV2L",
        "EfficientNetV2M",
        "EfficientNetV2S",
        "InceptionResNetV2",
        "InceptionV3",
        "MobileNet",
        "MobileNetV2",
        "MobileNetV3Large",
        "MobileNetV3Small",
        "NASNetLarge",
        "NASNetMobile",
        "ResNet101",
        "ResNet101V2",
        "ResNet152",
        "ResNet152V2",
        "ResNet50",
        "ResNet50V2",
        "VGG16",
        "VGG19",
        "Xception",
    )
]


def test_the_table_lists_every_application_keras_has():
    """Nothing is skipped silently: a network added to keras.applications fails this test."""
    available = {name for name in dir(keras.applications) if name[:1].isupper()}
    assert {a.name for a in APPS} == available


def _log(row: dict) -> None:
    path = os.environ.get("PORTANET_APPS_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")


#: Run in every CI run: the smallest network of each family (ResNet50V2 for the ResNets,
#: MobileNetV3Small for the MobileNetV3s, VGG16 and VGG19 are plain convolution stacks).
EXPORTED = {
    "ConvNeXtTiny",
    "DenseNet121",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "InceptionResNetV2",
    "InceptionV3",
    "MobileNet",
    "MobileNetV2",
    "MobileNetV3Small",
    "NASNetMobile",
    "ResNet50V2",
    "Xception",
}
ALL = os.environ.get("PORTANET_ALL_APPLICATIONS") == "1"
SKIPPED = (
    "a larger variant of a family exported in every run (the whole table is too slow "
    "and too large for CI): PORTANET_ALL_APPLICATIONS=1 runs it"
)


@pytest.mark.parametrize(
    "app",
    [
        pytest.param(
            a,
            id=f"{a.name}-{a.size}",
            marks=[] if a.name in EXPORTED or ALL else [pytest.mark.skip(reason=SKIPPED)],
        )
        for a in APPS
    ],
)
def test_application_saved_as_h5_and_keras_loads_and_exports_with_parity(app: App, tmp_path):
    import numpy as np

    import portanet
    from portanet.export import export_model
    from portanet.export.keras.load import load_keras
    from portanet.export.verify.compare import NOISE_FACTOR, NOISE_FLOOR
    from portanet.export.verify.gate import gate_report

    started = time.perf_counter()
    model = getattr(keras.applications, app.name)(
        weights=None, classes=10, input_shape=(app.size, app.size, 3)
    )
    calibrate(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, app.size, app.size, 3)).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    h5, zipped = tmp_path / f"{app.name}.h5", tmp_path / f"{app.name}.keras"
    model.save(h5)
    model.save(zipped)
    del model
    keras.backend.clear_session()
    built = time.perf_counter() - started

    loaded = {}
    for path in (h5, zipped):  # portanet reads both files back as they were written
        loaded[path.suffix] = load_keras(path)
        assert (loaded[path.suffix].loader, loaded[path.suffix].keras_version) == (
            "keras",
            keras.__version__,
        )
        got = np.asarray(loaded[path.suffix].model(x, training=False))
        assert np.array_equal(got, expected), path.name
    target = tmp_path / f"{app.name}.onnx"
    result = export_model(loaded[".h5"], target, atol=1e-3, tolerance_mode=NOISE_FLOOR)
    exported = time.perf_counter() - started - built
    runtime = portanet.load(target)
    zipped_report = gate_report(
        loaded[".keras"], runtime, runtime.schema, atol=1e-3, tolerance_mode=NOISE_FLOOR
    )

    rows = []
    for fmt, report in (("h5", result.report), ("keras", zipped_report)):
        assert report.passed and report.samples >= 24
        for output in report.outputs:
            assert output.unexplained == 0 and output.elements > 0
            bound = max(1e-3 + 1e-4, NOISE_FACTOR * (output.noise_floor or 0.0))
            assert output.max_abs <= bound, output.describe_failure(report.where)
        rows.append(
            {
                "format": fmt,
                "max_abs": report.max_abs,
                "noise_floor": max(o.noise_floor or 0.0 for o in report.outputs),
                "explained": sum(o.explained for o in report.outputs),
            }
        )
    _log(
        {
            "id": app.name,
            "size": app.size,
            "note": app.note,
            "rows": rows,
            "seconds": {
                "build_save": round(built, 1),
                "load_export_h5": round(exported, 1),
                "gate_keras": round(time.perf_counter() - started - built - exported, 1),
            },
        }
    )
