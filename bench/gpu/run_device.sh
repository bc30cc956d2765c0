#!/usr/bin/env bash
# Runs the int4 GEMM scratchpad on the GPU machine: sanitizer smoke test, then checks and timings.
#   bench/gpu/run_device.sh BIN_DIR OUT_DIR [int4_gemm options...]
set -uo pipefail
bin=$1 out=$2
shift 2
lib=$(dirname "$(find /usr/local/cuda* /opt /usr/lib -name 'libcublas.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
timeout 120 compute-sanitizer --tool memcheck "$bin/int4_gemm" --smoke > "$out/sanitizer.txt" 2>&1
echo "sanitizer rc=$?"; tail -5 "$out/sanitizer.txt"
timeout 400 "$bin/int4_gemm" --json "$out/int4.json" "$@" > "$out/log.txt" 2>&1
echo "bench rc=$?"
grep -E "FAIL|differ" "$out/log.txt" | head -20
tail -40 "$out/log.txt"
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
