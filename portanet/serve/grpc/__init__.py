"""The Open Inference Protocol over gRPC: ``inference.proto`` (the KServe V2 messages and
service) and the Python modules grpcio-tools generated from it (scripts/serve_grpc_stubs.sh)."""
