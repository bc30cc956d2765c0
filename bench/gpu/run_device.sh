#!/usr/bin/env bash
# Runs the weight-tile GEMM scratchpad on the GPU machine: sanitizer smoke test, correctness sweep,
# then timings. Every step has its own time limit so that one hang leaves the others' results (the
# JSON files are written record by record).
#   bench/gpu/run_device.sh BIN_DIR OUT_DIR [tiled_gemm timing options, e.g. --no-wgmma]
# Limits (seconds): SMOKE_S (default 90), CHECK_S (200), TIME_S (300).
set -uo pipefail
bin=$1 out=$2
shift 2
lib=$(dirname "$(find /usr/local/cuda* /opt /usr/lib -name 'libcublas.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
timeout "${SMOKE_S:-90}" compute-sanitizer --tool memcheck "$bin/tiled_gemm" --smoke > "$out/sanitizer.txt" 2>&1
echo "sanitizer rc=$?"; grep -E "FAIL|ERROR|error" "$out/sanitizer.txt" | head -10; tail -3 "$out/sanitizer.txt"
timeout "${CHECK_S:-200}" "$bin/tiled_gemm" --skip-time --json "$out/check.json" "$@" > "$out/check.txt" 2>&1
echo "checks rc=$?"
grep -E "FAIL|differ|error" "$out/check.txt" | head -20
grep -E "^reference|correctness" "$out/check.txt"
timeout "${TIME_S:-300}" "$bin/tiled_gemm" --skip-check --json "$out/time.json" "$@" > "$out/time.txt" 2>&1
echo "timings rc=$?"
grep -vE "^check" "$out/time.txt" | tail -100
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
