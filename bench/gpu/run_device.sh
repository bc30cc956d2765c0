#!/usr/bin/env bash
# Runs the int4 GEMM scratchpad on the GPU machine: sanitizer smoke test, then checks and timings
# (again without the wgmma variants if the full run fails).
#   bench/gpu/run_device.sh BIN_DIR OUT_DIR [int4_gemm options...]
set -uo pipefail
bin=$1 out=$2
shift 2
lib=$(dirname "$(find /usr/local/cuda* /opt /usr/lib -name 'libcublas.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv
timeout 120 compute-sanitizer --tool memcheck "$bin/int4_gemm" --smoke > "$out/sanitizer.txt" 2>&1
echo "sanitizer rc=$?"; grep -E "FAIL|ERROR|error" "$out/sanitizer.txt" | head -10; tail -3 "$out/sanitizer.txt"
timeout 400 "$bin/int4_gemm" --json "$out/int4.json" "$@" > "$out/log.txt" 2>&1
rc=$?
echo "bench rc=$rc"
if [ $rc -ne 0 ]; then
  tail -5 "$out/log.txt"
  timeout 300 "$bin/int4_gemm" --no-wgmma --json "$out/int4_nowgmma.json" "$@" > "$out/log_nowgmma.txt" 2>&1
  echo "bench --no-wgmma rc=$?"
  grep -E "FAIL|differ" "$out/log.txt" | head -20
  tail -25 "$out/log_nowgmma.txt"
else
  grep -E "FAIL|differ" "$out/log.txt" | head -20
  tail -32 "$out/log.txt"
fi
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
