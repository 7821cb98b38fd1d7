#!/usr/bin/env bash
# The main job, end to end: install into .venv, train the Pima network → models/pima_mlp.h5,
# export it to ONNX through the parity gate → models/pima_mlp.onnx (+ parity report), then
# predict the sample rows with the TensorFlow-free runtime.
source "$(dirname "$0")/_venv.sh" export
echo "== portanet train"
.venv/bin/portanet train --output models/pima_mlp.h5
echo "== portanet export"
.venv/bin/portanet export models/pima_mlp.h5 --output models/pima_mlp.onnx \
    --data portanet/reference/pima-indians-diabetes.csv --report models/pima_mlp.parity.json
echo "== portanet infer (examples/sample_rows.csv)"
.venv/bin/portanet infer models/pima_mlp.onnx examples/sample_rows.csv --keep-columns outcome
