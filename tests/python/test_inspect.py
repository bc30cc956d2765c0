"""`marlin inspect` against the python `gguf` package's reading of the same files."""
import collections
import json
import subprocess

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")


def run_inspect(marlin_bin, *args):
    return subprocess.run([str(marlin_bin), "inspect", *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def reference(default_model):
    return gguf.GGUFReader(str(default_model))


@pytest.fixture(scope="module")
def report(marlin_bin, default_model):
    result = run_inspect(marlin_bin, default_model, "--json", "--tensors", "--metadata")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def field_value(reader, key):
    return reader.fields[key].contents()


def test_summary_matches_the_gguf_package(report, reference):
    arch = field_value(reference, "general.architecture")
    assert report["architecture"] == arch == "llama"
    assert report["name"] == field_value(reference, "general.name")
    assert report["alignment"] == reference.alignment
    assert report["data_offset"] == reference.data_offset
    assert report["tensor_count"] == len(reference.tensors)
    assert report["metadata_count"] == len([k for k in reference.fields if not k.startswith("GGUF.")])
    assert report["parameters"] == sum(int(t.n_elements) for t in reference.tensors)
    assert report["tensor_bytes"] == sum(int(t.n_bytes) for t in reference.tensors)
    assert report["bits_per_weight"] == pytest.approx(8 * report["tensor_bytes"] / report["parameters"], rel=1e-12)
    assert report["vocab_size"] == len(reference.fields["tokenizer.ggml.tokens"].data)

    hyper = report["hyperparameters"]
    for name in ("block_count", "context_length", "embedding_length", "feed_forward_length",
                 "attention.head_count", "attention.head_count_kv"):
        assert hyper[name] == field_value(reference, f"{arch}.{name}"), name
    assert hyper["block_count"] == 30
    # FLOAT32 values: the package gives numpy float32; ours is the same value widened to double.
    assert hyper["rope.freq_base"] == float(field_value(reference, f"{arch}.rope.freq_base"))
    assert hyper["attention.layer_norm_rms_epsilon"] == float(
        field_value(reference, f"{arch}.attention.layer_norm_rms_epsilon"))
    assert report["tokenizer"]["ggml.model"] == "gpt2"
    assert report["tokenizer"]["ggml.pre"] == "smollm"


def test_type_histogram(report, reference):
    want = collections.Counter(t.tensor_type.name for t in reference.tensors)
    got = {row["type"]: row["tensors"] for row in report["tensor_types"]}
    assert got == dict(want)
    for row in report["tensor_types"]:
        tensors = [t for t in reference.tensors if t.tensor_type.name == row["type"]]
        assert row["parameters"] == sum(int(t.n_elements) for t in tensors)
        assert row["bytes"] == sum(int(t.n_bytes) for t in tensors)


def test_every_tensor_listed(report, reference):
    assert len(report["tensors"]) == len(reference.tensors)
    for got, want in zip(report["tensors"], reference.tensors):
        assert got["name"] == want.name
        assert got["type"] == want.tensor_type.name
        assert got["shape"] == [int(d) for d in want.shape]
        assert got["bytes"] == int(want.n_bytes)
        assert got["elements"] == int(want.n_elements)
        assert got["offset"] == int(want.data_offset)


def test_long_arrays_are_summarized(report, reference):
    tokens = report["metadata"]["tokenizer.ggml.tokens"]
    assert tokens["type"] == "ARRAY"
    summary = tokens["value"]
    assert summary["element_type"] == "STRING"
    assert summary["length"] == len(reference.fields["tokenizer.ggml.tokens"].data) == 49152
    assert summary["first"] == field_value(reference, "tokenizer.ggml.tokens")[:len(summary["first"])]
    assert len(summary["first"]) < 10
    template = report["metadata"]["tokenizer.chat_template"]["value"]
    assert template == field_value(reference, "tokenizer.chat_template")


def test_text_output(marlin_bin, default_model):
    result = run_inspect(marlin_bin, default_model)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "architecture    llama" in out
    assert "block_count" in out and " 30\n" in out
    assert "[STRING x 49152: '<|endoftext|>'" in out
    assert "Q4_1" in out and "Q8_0" in out
    assert len(out) < 20000, "the text report must not dump the vocabulary"
    with_tensors = run_inspect(marlin_bin, default_model, "--tensors")
    assert "blk.29.ffn_down.weight" in with_tensors.stdout


def test_default_model_is_used_without_a_path(marlin_bin, report):
    result = run_inspect(marlin_bin, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parameters"] == report["parameters"]


@pytest.mark.parametrize("damage", ["truncate", "magic", "tensor_type"])
def test_corrupt_file_gives_one_line_error(marlin_bin, default_model, reference, tmp_path, damage):
    data = bytearray(default_model.read_bytes()[: reference.data_offset + 4096])
    if damage == "truncate":
        data = data[:100000]
    elif damage == "magic":
        data[0:4] = b"GGML"
    else:
        # The first tensor info's parts are name length, name, n_dims, dims, type, offset.
        field = reference.tensors[0].field
        type_at = int(field.offset) + sum(int(part.nbytes) for part in field.parts[:-2])
        data[type_at:type_at + 4] = np.uint32(99).tobytes()
    path = tmp_path / "bad.gguf"
    path.write_bytes(bytes(data))
    result = run_inspect(marlin_bin, path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: gguf: "), lines[0]
    if damage == "tensor_type":
        assert f"tensor '{reference.tensors[0].name}': unknown ggml type id 99" in lines[0]
    if damage == "magic":
        assert "not a GGUF file" in lines[0]
