#!/usr/bin/env bash
# Runs every test: fetches what the tests need if it is missing (the default model, a virtualenv with
# the official OpenAI Python SDK), then the whole workspace's tests in the release profile, which
# shares its build with `cargo run --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/fetch-models.sh
if ! .venv/bin/python -c "import openai, httpx" 2>/dev/null; then
  echo "test: creating .venv with the OpenAI Python SDK"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "openai>=1.40,<3"
fi
# The e2e tests also start the real `hearth` binary, which `cargo test` does not build for another package.
cargo build --release --bin hearth
cargo test --release --workspace "$@"
