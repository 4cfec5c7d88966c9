#!/usr/bin/env bash
# Fetches the default model if it is missing, builds Hearth (release) and serves it on 127.0.0.1:8080.
# Extra arguments go to `hearth serve` (see `hearth serve --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/fetch-models.sh
exec cargo run --release --bin hearth -- serve "$@"
