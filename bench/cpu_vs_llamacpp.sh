#!/usr/bin/env bash
# CPU prefill/decode throughput of marlin against llama.cpp on the same model, thread count and
# lengths. Prints one JSON object on stdout and a readable table on stderr; see bench/README.md.
#
# llama.cpp is built once from the pinned llama-cpp-python sdist (which vendors it) outside the
# repository, in ${MARLIN_PEER_DIR:-$HOME/.cache/marlin-peer}, and rebuilt only when the pin, the
# compiler or the build flags change.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)

# The peer we measure against. Changing the version needs the new sdist's sha256 (from PyPI).
LLCPP_PY_VERSION="0.3.36"
LLCPP_SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
PEER_DIR="${MARLIN_PEER_DIR:-$HOME/.cache/marlin-peer}"

MODEL="$REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf"
THREADS=$(nproc)
PROMPT_TOKENS=512
GEN_TOKENS=128
REPS=5
BUILD_ONLY=0
LLAMACPP_AMX=0
MARLIN_BIN="$REPO/build/marlin"

usage() {
  cat <<EOF
usage: bench/cpu_vs_llamacpp.sh [options]

Measures prefill and decode tokens/s of llama.cpp (llama-bench) and of marlin (marlin bench) on the
CPU, one engine after the other, and prints both with the ratios marlin / llama.cpp as JSON.

options:
  --model PATH          GGUF model both engines run (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)
  --threads N           CPU threads for both engines (default: nproc = $(nproc))
  --prompt-tokens N     prefill length, llama-bench's ppN (default: 512)
  --gen-tokens N        decode length, llama-bench's tgN (default: 128)
  --reps R              timed repetitions after one warm-up; the median is reported (default: 5)
  --marlin-bin PATH     marlin executable (default: build/marlin)
  --llamacpp-amx        keep llama.cpp's AMX kernels (compiled out by default: with GCC they crash
                        in this pin, see bench/README.md); built in a separate cached directory
  --build-only          only build (or find cached) llama-bench, then print its path
  -h, --help            show this help

environment:
  MARLIN_PEER_DIR       where llama.cpp is unpacked and built (default: \$HOME/.cache/marlin-peer)
EOF
}

die() { echo "cpu_vs_llamacpp: $*" >&2; exit 1; }
log() { echo "cpu_vs_llamacpp: $*" >&2; }

positive_int() {  # name value
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL="${2:?--model needs a path}"; shift 2 ;;
    --threads) THREADS="${2:?--threads needs a number}"; shift 2 ;;
    --prompt-tokens) PROMPT_TOKENS="${2:?--prompt-tokens needs a number}"; shift 2 ;;
    --gen-tokens) GEN_TOKENS="${2:?--gen-tokens needs a number}"; shift 2 ;;
    --reps) REPS="${2:?--reps needs a number}"; shift 2 ;;
    --marlin-bin) MARLIN_BIN="${2:?--marlin-bin needs a path}"; shift 2 ;;
    --llamacpp-amx) LLAMACPP_AMX=1; shift ;;
    --build-only) BUILD_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
positive_int --threads "$THREADS"
positive_int --prompt-tokens "$PROMPT_TOKENS"
positive_int --gen-tokens "$GEN_TOKENS"
positive_int --reps "$REPS"

SRC_DIR="$PEER_DIR/llama-cpp-python-$LLCPP_PY_VERSION"
BUILD_DIR="$PEER_DIR/build-$LLCPP_PY_VERSION"
[ "$LLAMACPP_AMX" = 1 ] && BUILD_DIR="$BUILD_DIR-amx"
LLAMA_BENCH="$BUILD_DIR/bin/llama-bench"

# Fills CMAKE_ARGS. CPU only, Release, native SIMD (GGML_NATIVE=ON: what a user building llama.cpp
# gets); everything llama-bench does not need is off so that configure and build stay short.
# Compilers: those of marlin's own build (build/CMakeCache.txt) when it exists, otherwise what a
# fresh marlin configure picks (CC/CXX, else cc/c++), always passed as full paths.
# AMX: in this pin ggml's AMX kernels build their tile configuration in a way GCC optimizes away
# (only the palette byte survives), so the first tile load raises SIGILL; unless --llamacpp-amx,
# AMX is compiled out and the rest of -march=native stays.
set_cmake_args() {
  CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_VULKAN=OFF
    -DGGML_METAL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON)
  local cache="$REPO/build/CMakeCache.txt" lang path default
  for lang in C CXX; do
    path=""
    [ -f "$cache" ] && path=$(sed -n "s/^CMAKE_${lang}_COMPILER:[A-Z]*=//p" "$cache")
    if [ -z "$path" ]; then
      if [ "$lang" = C ]; then default="${CC:-cc}"; else default="${CXX:-c++}"; fi
      path=$(command -v "$default") || die "no $lang compiler found ($default)"
    fi
    CMAKE_ARGS+=("-DCMAKE_${lang}_COMPILER=$path")
  done
  if [ "$LLAMACPP_AMX" = 0 ] && [ "$(uname -m)" = x86_64 ]; then
    local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    CMAKE_ARGS+=("-DCMAKE_C_FLAGS=$no_amx" "-DCMAKE_CXX_FLAGS=$no_amx")
  fi
}

compiler_version() {  # first line of --version of the C++ compiler in CMAKE_ARGS
  local arg
  for arg in "${CMAKE_ARGS[@]}"; do
    [[ "$arg" == -DCMAKE_CXX_COMPILER=* ]] && "${arg#*=}" --version | head -n 1
  done
  return 0
}

fetch_sdist() {  # prints the sdist path
  local sdist="$PEER_DIR/sdist/llama_cpp_python-$LLCPP_PY_VERSION.tar.gz"
  if [ ! -f "$sdist" ]; then
    log "downloading llama-cpp-python==$LLCPP_PY_VERSION (sdist) into $PEER_DIR/sdist"
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      "llama-cpp-python==$LLCPP_PY_VERSION" -d "$PEER_DIR/sdist" >&2 ||
      die "pip download of llama-cpp-python==$LLCPP_PY_VERSION failed"
  fi
  echo "$LLCPP_SDIST_SHA256  $sdist" | sha256sum -c --status ||
    die "$sdist does not have the pinned sha256 (delete it to download it again)"
  echo "$sdist"
}

build_llamacpp() {
  mkdir -p "$PEER_DIR"
  local stamp stamp_file="$BUILD_DIR/marlin-build-stamp"
  set_cmake_args
  # The compiler's version is part of the stamp, so an upgraded compiler triggers a rebuild.
  stamp="llama-cpp-python $LLCPP_PY_VERSION | ${CMAKE_ARGS[*]} | $(compiler_version)"
  if [ -x "$LLAMA_BENCH" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
    return
  fi

  if [ ! -f "$SRC_DIR/.marlin-unpacked" ]; then
    local sdist
    sdist=$(fetch_sdist)
    log "unpacking $sdist"
    rm -rf "$SRC_DIR"
    mkdir -p "$SRC_DIR"
    # The sdist keeps llama.cpp's git metadata, so llama-bench reports the real build commit.
    tar -xzf "$sdist" -C "$SRC_DIR" --strip-components=1
    touch "$SRC_DIR/.marlin-unpacked"
  fi
  rm -rf "$BUILD_DIR"
  mkdir -p "$BUILD_DIR"

  local t0 t1 build_log="$BUILD_DIR/build.log"
  log "building llama-bench (CPU, Release, native) in $BUILD_DIR; log: $build_log"
  t0=$(date +%s)
  if ! { cmake -S "$SRC_DIR/vendor/llama.cpp" -B "$BUILD_DIR" "${CMAKE_ARGS[@]}" &&
         cmake --build "$BUILD_DIR" --target llama-bench -j "$(nproc)"; } >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "llama.cpp build failed (full log: $build_log)"
  fi
  t1=$(date +%s)
  echo "$((t1 - t0))" >"$BUILD_DIR/build-seconds"
  echo "$stamp" >"$stamp_file"
  log "built llama-bench in $((t1 - t0)) s"
}

build_llamacpp
if [ "$BUILD_ONLY" = 1 ]; then
  echo "$LLAMA_BENCH"
  exit 0
fi

[ -f "$MODEL" ] || die "model file not found: $MODEL"
MODEL=$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# timed NAME CMD...: runs CMD with stdout in $WORK/NAME.out and stderr in $WORK/NAME.err, and its
# wall, user and system seconds in $WORK/NAME.times (to tell how much CPU the machine gave it).
timed() {
  local name=$1 TIMEFORMAT='%R %U %S'
  shift
  { time "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; } 2>"$WORK/$name.times"
}

log "llama.cpp: pp$PROMPT_TOKENS and tg$GEN_TOKENS, $THREADS threads, $REPS reps (+ warm-up)"
timed llamacpp "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" \
  -r "$REPS" -o json || {
  cat "$WORK/llamacpp.err" >&2
  die "llama-bench failed"
}

# marlin's side: unavailable (with the reason) rather than an error while `marlin bench` is missing;
# a `marlin bench` that exists but fails is reported the same way and makes the script exit 1.
MARLIN_ARGS=()
MARLIN_FAILED=0
if [ ! -x "$MARLIN_BIN" ]; then
  echo "no executable at $MARLIN_BIN (build marlin first)" >"$WORK/marlin.unavailable"
elif [[ "$("$MARLIN_BIN" bench --help 2>&1)" != *--prompt-tokens* ]]; then
  # (CLI11 answers --help with status 0 even for an unknown subcommand, hence the look at the text.)
  echo "$MARLIN_BIN has no 'bench' subcommand (with --prompt-tokens) yet" >"$WORK/marlin.unavailable"
else
  log "marlin: prefill $PROMPT_TOKENS and decode $GEN_TOKENS, $THREADS threads, $REPS reps"
  if timed marlin "$MARLIN_BIN" bench --model "$MODEL" --prompt-tokens "$PROMPT_TOKENS" \
      --gen-tokens "$GEN_TOKENS" --threads "$THREADS" --reps "$REPS" --json; then
    MARLIN_ARGS=(--marlin-json "$WORK/marlin.out" --marlin-times "$WORK/marlin.times")
  else
    tail -n 5 "$WORK/marlin.err" >&2
    MARLIN_FAILED=1
    echo "'marlin bench' failed: $(tail -n 1 "$WORK/marlin.err")" >"$WORK/marlin.unavailable"
  fi
fi
[ -f "$WORK/marlin.unavailable" ] && MARLIN_ARGS=(--marlin-unavailable "$(cat "$WORK/marlin.unavailable")")

LLAMACPP_CXX=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
python3 "$REPO/bench/cpu_vs_llamacpp_report.py" \
  --llamacpp-json "$WORK/llamacpp.out" --llamacpp-times "$WORK/llamacpp.times" \
  --llamacpp-lib-dir "$BUILD_DIR/bin" \
  --llamacpp-version "llama-cpp-python $LLCPP_PY_VERSION" \
  --compiler "$LLAMACPP_CXX ($("$LLAMACPP_CXX" --version | head -n 1))" \
  --threads "$THREADS" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --reps "$REPS" \
  --model "$MODEL" "${MARLIN_ARGS[@]}"
exit "$MARLIN_FAILED"
