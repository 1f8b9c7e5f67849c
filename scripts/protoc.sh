#!/usr/bin/env bash
# Installs protoc (Debian's protobuf-compiler) when missing: the build compiles the gRPC code
# of the etcd client and of the instances' own service (command-api/proto) with it. ./dev and
# .ci/run call this before cargo; nothing to do when `protoc` is on the PATH or $PROTOC is set.
set -euo pipefail
if [ -n "${PROTOC:-}" ] || command -v protoc >/dev/null; then exit 0; fi
[ "$(id -u)" = 0 ] || { echo "[protoc] missing protoc: apt-get install protobuf-compiler (as root)" >&2; exit 1; }
echo "[protoc] installing protobuf-compiler (apt-get)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
