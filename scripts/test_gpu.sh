#!/usr/bin/env bash
# The GPU half of the tests, for a machine with an NVIDIA GPU (CI has none and runs the CPU half):
#   1. the CUDA conformance harness: every CUDA op and whole models against the CPU (test_cuda);
#   2. `marlin run --device cuda` next to `--device cpu` on the default model (32 greedy tokens);
#   3. the trellis quantizer's search on the GPU (the default) against the CPU's (MARLIN_TRELLIS_GPU_SEARCH=0):
#      layer 0's linears of the default model at 2, 3 and 4 bits, with LDLQ on a little calibration
#      text (q|k|v and gate|up as stacks), must give the same checkpoint bytes (but for its random id).
# The pass criterion for the GPU's numbers is the harness's (CudaModel.DefaultModelMatchesCpu:
# logits within the fp16 error bound of the exact CPU forward pass). The CPU's fast path rounds
# activations to 8 bits and the GPU's to fp16, so two greedy answers may part where two tokens are
# nearly tied; step 2 shows where they part and fails only when the GPU's answer is not text.
#   scripts/test_gpu.sh [BUILD_DIR]      (default: build/)
# Shared libraries the GPU machine may lack can be put in BUILD_DIR/lib.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
[ -d "$build/lib" ] && export LD_LIBRARY_PATH="$build/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

echo "== CUDA conformance harness"
(cd "$root" && "$build/tests/test_cuda" --gtest_brief=1)

echo "== marlin run --device cuda next to the CPU (32 greedy tokens)"
prompt="What is the capital of France?"
cpu=$("$build/marlin" run --device cpu --temperature 0 --max-tokens 32 "$prompt")
gpu=$("$build/marlin" run --device cuda --temperature 0 --max-tokens 32 "$prompt")
printf 'cpu: %s\ngpu: %s\n' "$cpu" "$gpu"
same=0
while [ $same -lt ${#cpu} ] && [ "${cpu:$same:1}" = "${gpu:$same:1}" ]; do same=$((same + 1)); done
echo "identical for the first $same of ${#cpu} characters"
if [ -z "$gpu" ] || ! printf '%s' "$gpu" | grep -q "Paris"; then
  echo "FAIL: the GPU's answer does not name Paris"
  exit 1
fi

echo "== trellis search on the GPU against the CPU's (layer 0's linears, byte for byte)"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
rules='layers.0.self_attn.q_proj=trellis2,layers.0.self_attn=trellis3,layers.0.mlp=trellis4,layers.=keep,embed=keep,lm_head=keep'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
quantize() {  # quantize OUT [ENV=VALUE]: layer 0's linears by $rules with LDLQ, the rest kept as stored
  if ! env ${2:-} "$build/marlin" quantize "$model" "$1" --format trellis --bits 3 --rules "$rules" --method gptq \
      --calibration-samples 4 --calibration-ctx 64 > "$tmp/log" 2>&1; then
    tail -3 "$tmp/log"
    exit 1
  fi
}
quantize "$tmp/cpu.marlin" MARLIN_TRELLIS_GPU_SEARCH=0
quantize "$tmp/gpu.marlin"
# The same bytes but for the checkpoint's random id.
if ! python3 - "$tmp/cpu.marlin" "$tmp/gpu.marlin" << 'EOF'
import re, sys
a, b = (re.sub(rb'\\"id\\":\\"[0-9a-f]+\\"', b'', open(f, 'rb').read(), count=1) for f in sys.argv[1:])
sys.exit(a != b)
EOF
then
  echo "FAIL: the GPU search wrote other bytes than the CPU's"
  exit 1
fi
echo "identical checkpoints"
echo "OK"
