#!/usr/bin/env bash
# Runs every test: fetches what the tests need if it is missing (the models, a virtualenv with the
# official OpenAI and Anthropic Python SDKs, LangChain's OpenAI and Anthropic chat models, the `gguf` and
# `numpy` packages that write the tiny model-family files, and `selenium`; Debian's Chromium and its
# WebDriver), then the whole workspace's tests in the release profile, which shares its build with
# `cargo run --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./scripts/fetch-models.sh
# The SDK suites (tests/sdk) drive the server with the `openai` and `anthropic` SDKs and with LangChain's
# ChatOpenAI (Responses API) and ChatAnthropic; an older .venv that lacks any of them is brought up to date.
# Their lower bounds are the versions the suites were written against (`anthropic` 2 takes `temperature` only
# through `extra_body`, where langchain-anthropic 1.7 puts it) (langchain-openai 1.7 needs openai>=2.45).
# gguf and numpy are pinned: tests/fixtures/family_models.py must write the very files llama.cpp was
# measured on (tests check their SHA-256).
# selenium drives the browser test of the playground (tests/playground) through Chromium's WebDriver.
if ! .venv/bin/python -c "import openai, anthropic, langchain_openai, langchain_anthropic, httpx, gguf, numpy, selenium, importlib.metadata as m; assert (m.version('gguf'), numpy.__version__) == ('0.19.0', '2.4.6')" 2>/dev/null; then
  echo "test: creating .venv with the OpenAI and Anthropic Python SDKs, LangChain, gguf, numpy and selenium"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "openai>=2.45,<3" "anthropic>=2.15,<3" \
    "langchain-openai>=1.7,<2" "langchain-anthropic>=1.7,<2" "gguf==0.19.0" "numpy==2.4.6" "selenium>=4.51,<5"
fi
# The playground's browser test runs Debian's headless Chromium and its WebDriver (and a font to draw text).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test: the playground's browser test needs Chromium and its WebDriver; install them with" >&2
    echo "  sudo apt-get install --no-install-recommends chromium chromium-driver fonts-dejavu-core" >&2
    exit 1
  fi
  echo "test: installing chromium, chromium-driver and fonts-dejavu-core"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
    fonts-dejavu-core >/dev/null
fi
# The e2e tests also start the real `hearth` binary, which `cargo test` does not build for another package.
cargo build --release --bin hearth
cargo test --release --workspace "$@"
