"""marlin's safetensors writer checked by the reference `safetensors` package.

The C++ test SafetensorsExport.* writes files (every dtype, padding tensors, a header that
outgrew its reservation) and a manifest of what it wrote into a folder; the package must accept
each file (its deserializer validates offsets, sizes and coverage) and give back exactly the
manifest's dtypes, shapes, bytes and metadata.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
from safetensors import deserialize, safe_open

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEST_BINARY = ROOT / "build" / "tests" / "test_formats"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if not TEST_BINARY.exists():
        pytest.fail(f"{TEST_BINARY} is missing: build the tests first")
    out = tmp_path_factory.mktemp("safetensors_export")
    subprocess.run([str(TEST_BINARY), "--gtest_filter=SafetensorsExport.*"], check=True, capture_output=True,
                   env={**os.environ, "MARLIN_SAFETENSORS_EXPORT_DIR": str(out)})
    return out, json.loads((out / "manifest.json").read_text())


def test_every_file_deserializes_to_the_manifest(exported):
    out, manifest = exported
    assert set(manifest) == {"plain.safetensors", "aligned.safetensors", "moved.safetensors"}
    for file, expected in manifest.items():
        raw = (out / file).read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        assert (8 + header_len) % 8 == 0, file
        tensors = dict(deserialize(raw))
        wanted = expected["tensors"]
        extra = {k for k in tensors if k not in wanted}
        if expected["aligned"]:
            assert all(k.startswith("__padding_") for k in extra), extra
        else:
            assert not extra, extra
        for name, want in wanted.items():
            got = tensors[name]
            assert got["dtype"] == want["dtype"], name
            assert list(got["shape"]) == want["shape"], name
            assert bytes(got["data"]).hex() == want["hex"], name


def test_metadata_and_numpy_view(exported):
    out, manifest = exported
    for file, expected in manifest.items():
        with safe_open(str(out / file), framework="numpy") as f:
            assert f.metadata() == expected["metadata"]
            big = f.get_tensor("big")
            want = np.frombuffer(bytes.fromhex(expected["tensors"]["big"]["hex"]), dtype=np.float32).reshape(257, 1031)
            assert np.array_equal(big.view(np.uint32), want.view(np.uint32))
            assert f.get_tensor("scalar").shape == ()


# --- .marlin checkpoints ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported_marlin(tmp_path_factory):
    if not TEST_BINARY.exists():
        pytest.fail(f"{TEST_BINARY} is missing: build the tests first")
    out = tmp_path_factory.mktemp("marlin_export")
    subprocess.run([str(TEST_BINARY), "--gtest_filter=MarlinExport.*"], check=True, capture_output=True,
                   env={**os.environ, "MARLIN_SAFETENSORS_EXPORT_DIR": str(out)})
    return out / "export.marlin", json.loads((out / "export.marlin.json").read_text())


def unpack_codes(row: bytes, count: int, bits: int) -> np.ndarray:
    """Values k of a row's little-endian bit stream at bits [k*bits, (k+1)*bits)."""
    stream = np.unpackbits(np.frombuffer(row, dtype=np.uint8), bitorder="little")
    return (stream[: count * bits].reshape(count, bits) << np.arange(bits)).sum(axis=1)


def dequantize(fmt: str, shape, parts: dict) -> np.ndarray:
    """docs/formats.md, implemented independently: logical-order fp32 weights of an int or f16 tensor."""
    rows, cols = shape
    if fmt == "f16":
        return np.frombuffer(bytes(parts["codes"]["data"]), dtype=np.float16).astype(np.float32).reshape(rows, cols)
    kind, *options = fmt.split("-")
    bits = int(kind[3:])
    group = cols if options[0] == "pc" else int(options[0][1:])
    codes = bytes(parts["codes"]["data"])
    row_bytes = len(codes) // rows
    scales = np.frombuffer(bytes(parts["scales"]["data"]), dtype=np.float16).reshape(rows, -1).astype(np.float32)
    zeros = np.frombuffer(bytes(parts["zeros"]["data"]), dtype=np.uint8).reshape(rows, -1) if "asym" in options else None
    perm = np.frombuffer(bytes(parts["perm"]["data"]), dtype=np.int32) if "act" in options else np.arange(cols)
    out = np.zeros((rows, cols), dtype=np.float32)
    for r in range(rows):
        q = unpack_codes(codes[r * row_bytes:(r + 1) * row_bytes], cols, bits).astype(np.int64)
        g = np.arange(cols) // group
        z = zeros[r, g].astype(np.int64) if zeros is not None else 1 << (bits - 1)
        out[r, perm] = scales[r, g] * (q - z).astype(np.float32)
    return out


def test_marlin_checkpoint_is_plain_safetensors(exported_marlin):
    path, manifest = exported_marlin
    raw = path.read_bytes()
    stored = dict(deserialize(raw))  # the reference parser accepts the file
    with safe_open(str(path), framework="numpy") as f:
        doc = json.loads(f.metadata()["marlin"])
    assert doc["format_version"] == 1
    assert doc["architecture"] == "LlamaForCausalLM"
    assert bytes(stored["__tokenizer_json__"]["data"]).decode() == manifest["tokenizer_json"]
    for name, entry in doc["tensors"].items():
        parts = {role: stored[tensor] for role, tensor in entry["parts"].items()}
        got = dequantize(entry["format"], entry["shape"], parts)
        want = np.array(manifest["dequantized"][name], dtype=np.float32).reshape(entry["shape"])
        assert np.array_equal(got, want), name
    # Every part starts 8-byte aligned in the file.
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    for name, info in header.items():
        if name != "__metadata__" and not name.startswith("__"):
            assert (8 + header_len + info["data_offsets"][0]) % 8 == 0, name
