#!/usr/bin/env bash
# Installs with pip, when missing, the Python tools the OpenAPI test (e2e/tests/openapi.rs)
# runs: openapi-spec-validator, and schemathesis 4 (its CLI changed across majors; the test
# uses 4.x flags). Called by `./dev test` and `.ci/run`.
set -euo pipefail
install() { python3 -m pip install -q --disable-pip-version-check "$1"; }
command -v openapi-spec-validator >/dev/null || install openapi-spec-validator
case "$(schemathesis --version 2>/dev/null)" in
  *" 4."*) ;;
  *) install "schemathesis==4.*" ;;
esac
