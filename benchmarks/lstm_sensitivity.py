"""The stacked-LSTM sensitivity case, reproduced: what the gate reports for a model that float32
cannot compute reliably.

A Keras 2 (tf-keras) regression network shaped like a stock-price predictor — four LSTM(50)
layers with Dropout, one Dense output, 60 time steps — with random weights drawn at a larger
scale than Glorot's (N(0, 0.5)), fed the gate's synthetic, unscaled inputs. The script exports it
in the default strict mode (the gate fails and explains why), prints the layerwise table on the
single worst row, then exports it in the noise-floor tolerance mode (accepted, with the rows
where the model's own sensitivity shows).

    .venv/bin/python benchmarks/lstm_sensitivity.py [--scale 0.5] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(path: Path, scale: float, seed: int) -> None:
    """Save the stacked LSTM to ``path`` (.h5, written by tf-keras)."""
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    layers = tf_keras.layers

    def lstm(**kwargs):
        return layers.LSTM(
            50,
            kernel_initializer=tf_keras.initializers.RandomNormal(0, scale),
            recurrent_initializer=tf_keras.initializers.RandomNormal(0, scale),
            **kwargs,
        )

    model = tf_keras.Sequential(
        [
            tf_keras.Input((60, 1)),
            lstm(return_sequences=True),
            layers.Dropout(0.2),
            lstm(return_sequences=True),
            layers.Dropout(0.2),
            lstm(return_sequences=True),
            layers.Dropout(0.2),
            lstm(),
            layers.Dropout(0.2),
            layers.Dense(1),
        ],
        name="stock_lstm",
    )
    model.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from portanet.errors import ParityError
    from portanet.export import export_model
    from portanet.export.keras.load import load_keras
    from portanet.export.verify.inputs import gate_inputs
    from portanet.export.verify.layerwise import compare_layers
    from portanet.export.verify.noise import float64_model

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "stock_lstm.h5"
        build(source, args.scale, args.seed)
        started = time.perf_counter()
        try:
            export_model(source, Path(folder) / "strict.onnx")
            print("strict mode: passed (no sensitivity at this scale)")
            return
        except ParityError as exc:
            report = exc.report
            print(
                f"$ portanet export stock_lstm.h5        # strict (default), "
                f"{time.perf_counter() - started:.1f} s → exit 1\n{exc}\n"
            )
        (output,) = report.outputs
        print(f"inputs: {report.inputs_from}")
        print(f"noise floor measured by: {report.noise}\n")

        worst = output.worst.row
        loaded = load_keras(source)
        result = export_model(loaded, Path(folder) / "floor.onnx", tolerance_mode="noise-floor")
        feeds = gate_inputs(result.schema, seed=0).feeds
        table = compare_layers(
            loaded,
            Path(folder) / "floor.onnx",
            result.schema,
            feeds,
            rows=[worst],
            where=report.where,
            model64=float64_model(loaded.model),
        )
        print(f"layerwise on the worst row, {worst} ({report.where(worst)}):")
        print(
            f"{'#':>2}  {'layer':<34} {'class':<6} {'max abs':>9} {'noise':>9} "
            f"{'out of tol':>11}  verdict"
        )
        for row in table.rows:
            name = row.layer + (f" (+ {', '.join(row.fused)})" if row.fused else "")
            verdict = (
                "pass" if row.passed else ("within noise" if not row.beyond_noise else "FAULT")
            )
            print(
                f"{row.index:>2}  {name:<34} {row.class_name:<6} {row.result.max_abs:>9.2e} "
                f"{row.noise if row.noise is not None else float('nan'):>9.2e} "
                f"{row.result.violations:>5}/{row.result.elements:<5}  {verdict}"
            )
        print(table.summary() + "\n")
        accepted = result.report.outputs[0]
        print(
            f"$ portanet export stock_lstm.h5 --tolerance-mode noise-floor  → exit 0: "
            f"{accepted.explained} of {accepted.elements} elements beyond tolerance, all "
            f"within the noise floor ({accepted.verdict()})"
        )


if __name__ == "__main__":
    main()
