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
