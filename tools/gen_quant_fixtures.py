#!/usr/bin/env python3
"""Writes tests/fixtures/quant/: random valid GGML blocks with the fp32 values the python `gguf`
package (an independent numpy implementation) dequantizes them to, and fp32 inputs with the bytes
gguf's reference quantizers produce.

Files per type T: T.blocks (raw blocks), T.expected (little-endian fp32 dequantized values);
quantize_input.f32 and T.quantized for the quantizers. Deterministic (fixed seed).
Usage: python3 tools/gen_quant_fixtures.py [out_dir]
"""
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

# Byte offsets of the fp16 scale fields in each block type; they get finite random values
# (every other byte pattern is a valid block).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS_PER_TYPE = {32: 64, 256: 16}
FLOAT_VALUES = 1024


def finite_fp16(rng, n):
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    bad = (h & 0x7C00) == 0x7C00  # inf / nan
    h[bad] &= 0xBFFF  # clear one exponent bit
    h[:4] = [0x0000, 0x8000, 0x0001, 0x3C00]  # zero, -zero, smallest subnormal, one
    return h


def random_blocks(rng, qtype):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    n = BLOCKS_PER_TYPE[block_elems]
    raw = rng.integers(0, 256, size=(n, block_bytes), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        # Scales near 1 in magnitude keep values readable; the first few blocks get the edge cases.
        d = rng.uniform(-2, 2, size=n).astype(np.float16).view(np.uint16)
        d[:4] = finite_fp16(rng, 4)[:4]
        raw[:, off:off + 2] = d.view(np.uint8).reshape(n, 2)
    return raw


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests/fixtures/quant")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261126)

    for qtype in FP16_FIELDS:
        raw = random_blocks(rng, qtype)
        expected = quants.dequantize(raw, qtype).astype("<f4")
        (out / f"{qtype.name}.blocks").write_bytes(raw.tobytes())
        (out / f"{qtype.name}.expected").write_bytes(expected.tobytes())

    f16 = finite_fp16(rng, FLOAT_VALUES)
    (out / "F16.blocks").write_bytes(f16.astype("<u2").tobytes())
    (out / "F16.expected").write_bytes(quants.dequantize(f16.view(np.uint8), T.F16).astype("<f4").tobytes())
    bf16 = rng.integers(0, 1 << 16, size=FLOAT_VALUES, dtype=np.uint16)
    bf16[(bf16 & 0x7F80) == 0x7F80] &= 0xBFFF
    (out / "BF16.blocks").write_bytes(bf16.astype("<u2").tobytes())
    (out / "BF16.expected").write_bytes(quants.dequantize(bf16.view(np.uint8), T.BF16).astype("<f4").tobytes())
    f32 = rng.standard_normal(FLOAT_VALUES).astype("<f4")
    (out / "F32.blocks").write_bytes(f32.tobytes())
    (out / "F32.expected").write_bytes(f32.tobytes())

    # Quantizer inputs: blocks at very different scales, an all-zero block, a constant block,
    # a single outlier, and exact ties.
    x = rng.standard_normal((64, 32)).astype(np.float32)
    x *= (10.0 ** rng.uniform(-4, 3, size=(64, 1))).astype(np.float32)
    x[0] = 0
    x[1] = 0.75
    x[2] = 0
    x[2, 7] = -3.0
    x[3] = np.linspace(-1, 1, 32, dtype=np.float32)
    x = x.reshape(-1).astype("<f4")
    (out / "quantize_input.f32").write_bytes(x.tobytes())
    for qtype in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        (out / f"{qtype.name}.quantized").write_bytes(quants.quantize(x, qtype).tobytes())


if __name__ == "__main__":
    main()
