#!/usr/bin/env bash
# Regenerate portanet/serve/grpc/inference_pb2*.py from inference.proto with grpcio-tools
# (a build-time tool, not a dependency: installed into a throwaway folder).
# Usage: scripts/serve_grpc_stubs.sh [PYTHON]   (the runtime keeps only grpcio + protobuf)
set -euo pipefail
python=${1:-python}
root=$(cd "$(dirname "$0")/.." && pwd)
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$python" -m pip install --quiet --no-deps --target "$tools" "grpcio-tools==1.85.1"
cd "$root/portanet/serve/grpc"
PYTHONPATH="$tools" "$python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
  --grpc_python_out=. inference.proto
# the generated service module imports its messages as a top-level module: make it relative
sed -i 's/^import inference_pb2 as inference__pb2/from . import inference_pb2 as inference__pb2/' \
  inference_pb2_grpc.py
