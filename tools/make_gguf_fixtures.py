#!/usr/bin/env python3
"""Writes the GGUF reader's fixtures with the `gguf` package (an independent writer) and records
what the package's own reader sees in them, for tests/formats/test_gguf_python_fixture.cpp.

  python3 tools/make_gguf_fixtures.py   # rewrites tests/fixtures/formats/python_writer.{gguf,json}

The file holds every metadata value type, nested arrays, a custom alignment (64) and tensors of
several ggml types and ranks. The JSON lists each key with its type chain and value, and each
tensor with its type id, GGUF-order shape, absolute data offset, size and first data bytes.
"""
import json
import pathlib

import numpy as np
import gguf
from gguf import GGUFValueType as T

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "formats"


def write(path: pathlib.Path) -> dict:
    """Writes the fixture; returns the metadata values as handed to the writer."""
    w = gguf.GGUFWriter(str(path), arch="testarch")
    w.add_custom_alignment(64)
    w.add_name("python fixture")
    w.add_uint8("test.u8", 255)
    w.add_int8("test.i8", -128)
    w.add_uint16("test.u16", 65535)
    w.add_int16("test.i16", -32768)
    w.add_uint32("test.u32", 4294967295)
    w.add_int32("test.i32", -2147483648)
    w.add_uint64("test.u64", 18446744073709551615)
    w.add_int64("test.i64", -9223372036854775808)
    w.add_float32("test.f32", 0.1)
    w.add_float64("test.f64", -2.5e-300)
    w.add_bool("test.true", True)
    w.add_bool("test.false", False)
    w.add_string("test.string", "h\u00e9llo\nw\u00f6rld \u2603")
    w.add_array("test.strings", ["a", "", "multi\nline", "\u00c4"])
    w.add_array("test.floats", [0.5, -1.25, 3.0e38])
    w.add_array("test.bools", [True, False, True])
    w.add_array("test.i32s", [-1, 0, 2147483647])
    w.add_key_value("test.u16s", [1, 2, 65535], T.ARRAY, sub_type=T.UINT16)
    w.add_key_value("test.i64s", [-5, 2**40], T.ARRAY, sub_type=T.INT64)
    w.add_array("test.nested", [[1, 2, 3], [4], [5, 6]])
    w.add_array("test.nested_strings", [["x", "y"], ["z"]])
    w.add_array("test.deep", [[[[7, 8]]]])
    w.add_uint32("testarch.block_count", 2)

    rng = np.random.default_rng(0)
    w.add_tensor("a.f32", rng.standard_normal((5, 3)).astype(np.float32))
    w.add_tensor("b.f16", rng.standard_normal(7).astype(np.float16))
    q8 = rng.integers(0, 256, size=(2, 34), dtype=np.uint8)
    w.add_tensor("c.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    w.add_tensor("d.q4_k", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    w.add_tensor("e.rank4", rng.standard_normal((2, 1, 3, 2)).astype(np.float32))
    written = {key: value.value for key, value in w.kv_data[0].items()}
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return written


def plain(value):
    """Reader contents -> JSON-friendly python values (numpy scalars to int/float)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int, bool, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    return value


def describe(path: pathlib.Path, written: dict) -> dict:
    r = gguf.GGUFReader(str(path))
    metadata = []
    for key, field in r.fields.items():
        if key.startswith("GGUF."):
            continue
        types = [T(t).name for t in field.types]
        # The reader flattens arrays of arrays; for those, the value is what the writer was given.
        value = written[key] if types.count("ARRAY") > 1 else plain(field.contents())
        metadata.append({"key": key, "types": types, "value": value})
    tensors = []
    for t in r.tensors:
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        tensors.append({"name": t.name, "type": int(t.tensor_type), "shape": [int(d) for d in t.shape],
                        "offset": int(t.data_offset), "bytes": int(t.n_bytes),
                        "elements": int(t.n_elements), "first_bytes": bytes(raw[:16]).hex()})
    return {"gguf_package": "0.19.0", "file_size": path.stat().st_size, "alignment": int(r.alignment),
            "data_offset": int(r.data_offset), "metadata": metadata, "tensors": tensors}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "python_writer.gguf"
    written = write(path)
    description = describe(path, written)
    (OUT / "python_writer.json").write_text(json.dumps(description, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes) and its description")


if __name__ == "__main__":
    main()
