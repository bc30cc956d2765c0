#!/usr/bin/env python3
"""safetensors files written by the reference `safetensors` package, for the C++ reader's parity test.

Writes into --out (default tests/fixtures/formats/safetensors):
  all_dtypes.safetensors  one small tensor of every dtype the package knows, with metadata
  numpy.safetensors       arrays saved by safetensors.numpy.save_file
  sharded/                a checkpoint split in two shards with model.safetensors.index.json,
                          laid out as transformers' save_pretrained does
  manifest.json           for every file: metadata and each tensor's dtype, shape and bytes (hex),
                          taken from the arrays handed to the package (not from its output)

Needs numpy and safetensors. Run from the repository root:
  python3 tools/make_safetensors_fixtures.py
"""
import argparse
import json
import pathlib

import numpy as np
from safetensors import TensorSpec, serialize_file
from safetensors.numpy import save_file

# (package dtype name, header dtype, bits per element)
DTYPES = [
    ("bool", "BOOL", 8), ("uint8", "U8", 8), ("int8", "I8", 8), ("float8_e4m3fn", "F8_E4M3", 8),
    ("float8_e4m3fnuz", "F8_E4M3FNUZ", 8), ("float8_e5m2", "F8_E5M2", 8), ("float8_e5m2fnuz", "F8_E5M2FNUZ", 8),
    ("float8_e8m0fnu", "F8_E8M0", 8), ("float4_e2m1fn_x2", "F4", 4), ("int16", "I16", 16), ("uint16", "U16", 16),
    ("float16", "F16", 16), ("bfloat16", "BF16", 16), ("int32", "I32", 32), ("uint32", "U32", 32),
    ("float32", "F32", 32), ("int64", "I64", 64), ("uint64", "U64", 64), ("float64", "F64", 64),
    ("complex64", "C64", 64),
]


def manifest_entry(dtype: str, shape, data: bytes) -> dict:
    return {"dtype": dtype, "shape": [int(d) for d in shape], "hex": data.hex()}


def all_dtypes(out: pathlib.Path, rng) -> dict:
    keep = []
    specs, expected = {}, {}
    for i, (name, header_dtype, bits) in enumerate(DTYPES):
        shape = [2, 3 + i % 3] if bits >= 8 else [2, 4]
        nbytes = int(np.prod(shape)) * bits // 8
        data = rng.integers(0, 256, nbytes, dtype=np.uint8)
        if name == "bool":
            data = data & 1
        keep.append(data)
        # The package takes a packed dtype's storage shape and doubles its last dimension.
        spec_shape = shape if bits >= 8 else [shape[0], shape[1] // 2]
        tensor = f"t{i:02d}.{header_dtype.lower()}"
        specs[tensor] = TensorSpec(dtype=name, shape=spec_shape, data_ptr=data.ctypes.data, data_len=nbytes)
        expected[tensor] = manifest_entry(header_dtype, shape, data.tobytes())
    empty = np.zeros(0, dtype=np.float32)
    specs["empty"] = TensorSpec(dtype="float32", shape=[0, 7], data_ptr=empty.ctypes.data, data_len=0)
    expected["empty"] = manifest_entry("F32", [0, 7], b"")
    metadata = {"format": "pt", "note": "ünïcode ✓"}
    serialize_file(specs, str(out / "all_dtypes.safetensors"), metadata=metadata)
    return {"metadata": metadata, "tensors": expected}


def numpy_file(out: pathlib.Path, rng) -> dict:
    arrays = {
        "model.embed_tokens.weight": rng.standard_normal((5, 4)).astype(np.float32),
        "model.norm.weight": rng.standard_normal(4).astype(np.float16),
        "scalar": np.array(3.5, dtype=np.float64),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    save_file(arrays, str(out / "numpy.safetensors"))
    header = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
              np.dtype(np.int64): "I64"}
    return {"metadata": {},
            "tensors": {k: manifest_entry(header[v.dtype], v.shape, v.tobytes()) for k, v in arrays.items()}}


def sharded(out: pathlib.Path, rng) -> dict:
    folder = out / "sharded"
    folder.mkdir(exist_ok=True)
    shards = [
        {"model.layers.0.mlp.up_proj.weight": rng.standard_normal((6, 4)).astype(np.float32),
         "model.embed_tokens.weight": rng.standard_normal((3, 4)).astype(np.float32)},
        {"model.layers.1.mlp.up_proj.weight": rng.standard_normal((6, 4)).astype(np.float32),
         "lm_head.weight": rng.standard_normal((3, 4)).astype(np.float32)},
    ]
    weight_map, expected, total = {}, {}, 0
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = name
            expected[k] = manifest_entry("F32", v.shape, v.tobytes())
            total += v.nbytes
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return {"metadata": {}, "tensors": expected}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/formats/safetensors"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1127)
    manifest = {
        "all_dtypes.safetensors": all_dtypes(args.out, rng),
        "numpy.safetensors": numpy_file(args.out, rng),
        "sharded/model.safetensors.index.json": sharded(args.out, rng),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(manifest)} fixtures to {args.out}")


if __name__ == "__main__":
    main()
