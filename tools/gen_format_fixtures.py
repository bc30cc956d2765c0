#!/usr/bin/env python3
"""Writes tests/fixtures/quant/formats/: reference data for marlin's weight formats (src/quant/format.h),
computed independently of the C++ code.

1. Scalar codecs, from torch (float8_e4m3fn, float8_e8m0fnu) and ml_dtypes (float4_e2m1fn):
   <codec>.decode.f32  the value of every code (256, or 16 for e2m1), little-endian fp32
   <codec>.encode.f32  fp32 inputs (edge cases: ties, subnormals, saturation, NaN, inf, random)
   <codec>.encode.u8   the code the reference gives each input
2. Whole tensors: random codes, scales, zero points and 2:4 patterns for one tensor per format name,
   packed with numpy's bit routines and dequantized with the formulas of format.h:
   index.json lists {name, rows, cols, tensor_scale}; <name>.{codes,scales,zeros,meta,expected}.

Deterministic (fixed seed). Needs numpy, torch and ml_dtypes (pip install ml_dtypes).
Usage: python3 tools/gen_format_fixtures.py [out_dir]
"""
import json
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import torch

RNG = np.random.default_rng(20261127)


def torch_codes(x, dtype):
    return torch.from_numpy(np.asarray(x, dtype=np.float32)).to(dtype).view(torch.uint8).numpy()


def torch_values(codes, dtype):
    return torch.from_numpy(np.asarray(codes, dtype=np.uint8)).view(dtype).to(torch.float32).numpy()


def e4m3_values(codes):
    return torch_values(codes, torch.float8_e4m3fn)


def e8m0_values(codes):
    return torch_values(codes, torch.float8_e8m0fnu)


def e2m1_values(codes):
    return np.asarray(codes, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn).astype(np.float32)


def around(values):
    """Each value, its fp32 neighbours, and the midpoints to the next value (the rounding ties)."""
    v = np.asarray(sorted(set(float(x) for x in values if np.isfinite(x))), dtype=np.float32)
    mids = ((v[:-1].astype(np.float64) + v[1:]) / 2).astype(np.float32)
    pts = np.concatenate([v, mids, np.nextafter(mids, np.float32(0)), np.nextafter(mids, np.float32(np.inf)),
                          np.nextafter(v, np.float32(np.inf))])
    return np.concatenate([pts, -pts])


def write_codec(out, name, all_codes, values_of, encode_inputs, encode):
    values = values_of(all_codes).astype("<f4")
    (out / f"{name}.decode.f32").write_bytes(values.tobytes())
    x = np.asarray(encode_inputs, dtype=np.float32)
    (out / f"{name}.encode.f32").write_bytes(x.astype("<f4").tobytes())
    (out / f"{name}.encode.u8").write_bytes(np.asarray(encode(x), dtype=np.uint8).tobytes())


def codec_fixtures(out):
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype=np.float32)

    e4m3_grid = e4m3_values(np.arange(256))
    x = np.concatenate([around(e4m3_grid), special, [460, 464, 470, 480, 500, 1e6, 3e38, -1e6],
                        RNG.standard_normal(2000) * np.exp2(RNG.uniform(-14, 10, 2000))])
    # Negative NaN codes are the sign's business; torch keeps the sign of NaN, as marlin does.
    write_codec(out, "e4m3", np.arange(256), e4m3_values, x, lambda v: torch_codes(v, torch.float8_e4m3fn))

    e2m1_grid = e2m1_values(np.arange(16))
    x = np.concatenate([around(e2m1_grid), [0.0, -0.0, 6.5, 7.0, 100.0, -100.0, np.inf, -np.inf],
                        RNG.standard_normal(1000) * 3])
    write_codec(out, "e2m1", np.arange(16), e2m1_values, x,
                lambda v: v.astype(ml_dtypes.float4_e2m1fn).view(np.uint8))

    # E8M0 encodes magnitudes; torch sends values past 1.5·2^127 to NaN where marlin saturates, and
    # rounds fp32 subnormals in (2^-127, 1.5·2^-127) up where marlin takes the nearest, so the
    # inputs avoid both (tested in C++).
    powers = np.exp2(np.arange(-126, 127, dtype=np.float64)).astype(np.float32)
    x = np.concatenate([powers, powers * 1.5, np.nextafter(powers * 1.5, np.float32(0)), powers * 1.75,
                        powers * 1.25, [np.nan, 2.0 ** -127, 2.0 ** -128, 1.5 * 2.0 ** -127, 1.6 * 2.0 ** -127, 0.0], np.exp2(RNG.uniform(-120, 120, 1000))])
    write_codec(out, "e8m0", np.arange(256), e8m0_values, x, lambda v: torch_codes(v, torch.float8_e8m0fnu))


def pack_bits(codes, bits):
    """Row-wise little-endian bit streams: code k at bits [k·bits, (k+1)·bits)."""
    rows = codes.shape[0]
    stream = np.unpackbits(codes.astype(np.uint8)[..., None], axis=-1, bitorder="little")[..., :bits]
    return np.packbits(stream.reshape(rows, -1), axis=-1, bitorder="little")


FORMATS = {
    # name: (bits, kind, group, asym, sparse)
    "int8-pc": (8, "int", 0, False, False),
    "int8-g128-asym": (8, "int", 128, True, False),
    "int4-g128": (4, "int", 128, False, False),
    "int4-g32-asym": (4, "int", 32, True, False),
    "int4-g64-act-24": (4, "int", 64, False, True),
    "int4-g128-asym-24": (4, "int", 128, True, True),
    "int3-g64": (3, "int", 64, False, False),
    "int3-g128-asym": (3, "int", 128, True, False),
    "int2-g32": (2, "int", 32, False, False),
    "int2-pc-asym": (2, "int", 0, True, False),
    "fp8-g128": (8, "fp8", 128, False, False),
    "fp8-pc": (8, "fp8", 0, False, False),
    "fp4-g32": (4, "fp4", 32, False, False),
    "mxfp4": (4, "mxfp4", 32, False, False),
    "nvfp4": (4, "nvfp4", 16, False, False),
}
VALID_PATTERNS = [(a, b) for a in range(4) for b in range(4) if a < b]


def tensor_fixture(out, name, bits, kind, group, asym, sparse, rows, cols):
    groups = 1 if group == 0 else -(-cols // group)
    group_len = cols if group == 0 else group
    stored = cols // 2 if sparse else cols
    codes = RNG.integers(0, 1 << bits, size=(rows, stored), dtype=np.uint8)
    tensor_scale = 1.0
    files = {"codes": pack_bits(codes, bits)}
    if kind == "mxfp4":
        scale_codes = RNG.integers(110, 140, size=(rows, groups), dtype=np.uint8)
        scale = e8m0_values(scale_codes)
        files["scales"] = scale_codes
    elif kind == "nvfp4":
        scale_codes = RNG.integers(0, 0x7f, size=(rows, groups), dtype=np.uint8)
        tensor_scale = float(np.float32(0.0123))
        scale = np.float32(tensor_scale) * e4m3_values(scale_codes)
        files["scales"] = scale_codes
    else:
        scale16 = RNG.uniform(1e-4, 0.2, size=(rows, groups)).astype(np.float16)
        scale16[0, 0] = np.float16(6e-8)  # an fp16 subnormal
        scale = scale16.astype(np.float32)
        files["scales"] = scale16.astype("<f2").view(np.uint8)
    zero = np.full((rows, groups), 1 << (bits - 1))
    if kind == "int" and asym:
        zero = RNG.integers(0, 1 << bits, size=(rows, groups))
        files["zeros"] = zero.astype(np.uint8)
    decoded = {"fp8": e4m3_values, "int": lambda q: q.astype(np.float32)}.get(kind, e2m1_values)(codes)

    if sparse:
        choice = RNG.integers(0, len(VALID_PATTERNS), size=(rows, cols // 4))
        first = np.array([p[0] for p in VALID_PATTERNS])[choice]
        second = np.array([p[1] for p in VALID_PATTERNS])[choice]
        files["meta"] = pack_bits((first | (second << 2)).astype(np.uint8), 4)
        col_of_stored = np.empty((rows, stored), dtype=np.int64)
        col_of_stored[:, 0::2] = 4 * np.arange(cols // 4) + first
        col_of_stored[:, 1::2] = 4 * np.arange(cols // 4) + second
    else:
        col_of_stored = np.broadcast_to(np.arange(cols), (rows, cols))

    expected = np.zeros((rows, cols), dtype=np.float32)
    for r in range(rows):
        for k in range(stored):
            c = col_of_stored[r, k]
            g = c // group_len
            v = np.float32(decoded[r, k] - zero[r, g]) if kind == "int" else decoded[r, k]
            expected[r, c] = np.float32(scale[r, g]) * np.float32(v)
    files["expected"] = expected.astype("<f4")
    for ext, data in files.items():
        (out / f"{name}.{ext}").write_bytes(np.ascontiguousarray(data).tobytes())
    return {"name": name, "rows": rows, "cols": cols, "tensor_scale": tensor_scale}


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else
               Path(__file__).resolve().parent.parent / "tests/fixtures/quant/formats")
    out.mkdir(parents=True, exist_ok=True)
    codec_fixtures(out)
    index = []
    for name, (bits, kind, group, asym, sparse) in FORMATS.items():
        # 320 columns: a partial last group for g128 / g64 (320 = 2·128 + 64 = 5·64); 3 rows.
        index.append(tensor_fixture(out, name, bits, kind, group, asym, sparse, rows=3, cols=320))
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
