#!/usr/bin/env bash
# Runs every test: fetches what the tests need if it is missing (the models, a virtualenv with the
# official OpenAI Python SDK and the `gguf` and `numpy` packages that write the tiny model-family files),
# then the whole workspace's tests in the release profile, which
# shares its build with `cargo run --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/fetch-models.sh
# gguf and numpy are pinned: tests/fixtures/family_models.py must write the very files llama.cpp was
# measured on (tests check their SHA-256).
if ! .venv/bin/python -c "import openai, httpx, gguf, numpy, importlib.metadata as m; assert (m.version('gguf'), numpy.__version__) == ('0.19.0', '2.4.6')" 2>/dev/null; then
  echo "test: creating .venv with the OpenAI Python SDK, gguf and numpy"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "openai>=1.40,<3" "gguf==0.19.0" "numpy==2.4.6"
fi
# The e2e tests also start the real `hearth` binary, which `cargo test` does not build for another package.
cargo build --release --bin hearth
cargo test --release --workspace "$@"
