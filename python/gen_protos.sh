#!/usr/bin/env bash
# Regenerates the protobuf modules (and their .pyi stubs) from the .proto files.
# Needs grpcio-tools and mypy-protobuf (both in the "dev" extra). The output is committed.
set -euo pipefail
cd "$(dirname "$0")"
for proto in neonet/core/pb/*.proto neonet/proto/pb/*.proto; do
  python -m grpc_tools.protoc -I. --python_out=. --mypy_out=. "$proto"
done
