"""The tokenizer.json and tokenizer_config.json marlin exports from a GGUF file, checked with HF:
`tokenizers` loads them and gives the ids and text of marlin's own GGUF tokenizer on a corpus
drawn with a different seed than the committed fixtures (plain, with BOS/EOS, without parsing
special tokens); their pipeline, vocabulary, merges and added tokens equal those of the tokenizer
transformers builds from the same GGUF (SmolLM2: its published tokenizer.json); and
transformers' AutoTokenizer loads the folder with the same ids, special tokens and chat template.

The files come from the C++ exporter through the test binary (ExportHfJson.WriteFilesNamedByEnvironment).
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer_reference as ref  # noqa: E402
from test_tokenizer import write_spm_gguf  # noqa: E402
from tokenizer_corpus import build_corpus  # noqa: E402

EXPORTER = ROOT / "build" / "tests" / "test_tokenizer"
SEED = 11  # neither the committed fixtures' seed nor test_tokenizer.py's


@pytest.fixture(scope="session")
def corpus():
    return build_corpus(SEED)


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("tokx") / "corpus.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in corpus), encoding="ascii")
    return path


@pytest.fixture(scope="session")
def smollm2_meta(default_model):
    return ref.read_metadata(default_model)


def export(gguf_path, out_dir):
    if not EXPORTER.exists():
        pytest.fail(f"{EXPORTER} is missing: build the tests first")
    env = dict(os.environ, MARLIN_EXPORT_HF_GGUF=str(gguf_path), MARLIN_EXPORT_HF_DIR=str(out_dir))
    result = subprocess.run([str(EXPORTER), "--gtest_filter=ExportHfJson.WriteFilesNamedByEnvironment"], env=env,
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stdout.decode()[-2000:]
    assert (out_dir / "tokenizer.json").exists(), result.stdout.decode()[-2000:]
    return out_dir


def marlin_rows(marlin_bin, model, corpus_file, *flags):
    result = subprocess.run([str(marlin_bin), "tokenize", "--model", str(model), "--file", str(corpus_file), *flags],
                            capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().split("\n") if line]


def write_byte_level_gguf(path, meta, pre):
    """SmolLM2's byte-level tokenizer metadata with another tokenizer.ggml.pre."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(meta["tokenizer.ggml.tokens"])
    w.add_token_merges(meta["tokenizer.ggml.merges"])
    w.add_token_types(meta["tokenizer.ggml.token_type"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_chat_template(meta["tokenizer.chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


CASES = ["smollm2", "gemma3", "llama-spm", "phi3-spm", "qwen2-split"]


@pytest.fixture(scope="session", params=CASES)
def case(request, tmp_path_factory, default_model, smollm2_meta):
    """(name, gguf path, its metadata, the HF reference tokenizer, the exported folder)."""
    name = request.param
    work = tmp_path_factory.mktemp(name)
    if name == "smollm2":
        path, reference = default_model, ref.smollm2_published(smollm2_meta)
    elif name == "gemma3":
        if not ref.GEMMA3.exists():
            pytest.skip(f"{ref.GEMMA3} is missing")
        path, reference = ref.GEMMA3, None
    elif name.endswith("-spm"):
        path = work / "spm.gguf"
        write_spm_gguf(path, smollm2_meta, arch=name.split("-")[0])
        reference = None
    else:
        path = work / "bpe.gguf"
        write_byte_level_gguf(path, smollm2_meta, "qwen2")
        reference = None
    meta = ref.read_metadata(path)
    if reference is None:
        reference = ref.transformers_gguf(meta)
    return name, path, meta, reference, export(path, work / "hf")


def test_tokenizers_gives_marlin_gguf_ids(case, marlin_bin, corpus, corpus_file):
    from tokenizers import Tokenizer

    _, path, _, _, folder = case
    exported = Tokenizer.from_file(str(folder / "tokenizer.json"))
    plain = marlin_rows(marlin_bin, path, corpus_file)
    special = marlin_rows(marlin_bin, path, corpus_file, "--add-special")
    literal = marlin_rows(marlin_bin, path, corpus_file, "--no-parse-special")
    assert len(plain) == len(special) == len(literal) == len(corpus)
    bad = []
    for text, row, row_special, row_literal in zip(corpus, plain, special, literal):
        ids = exported.encode(text, add_special_tokens=False).ids
        if ids != row["ids"] or exported.decode(ids, skip_special_tokens=False) != row["decoded"]:
            bad.append(("plain", text, row["ids"], ids))
        if exported.encode(text).ids != row_special["ids"]:
            bad.append(("add_special", text, row_special["ids"], exported.encode(text).ids))
    assert not bad, f"{len(bad)} differ; first: {bad[0]}"
    # Special tokens written in the text stay text when not parsed (HF: encode_special_tokens).
    exported.encode_special_tokens = True
    bad = [text for text, row in zip(corpus, literal) if exported.encode(text, add_special_tokens=False).ids != row["ids"]]
    assert not bad, f"{len(bad)} differ without parsing special tokens; first: {bad[0]!r}"


def test_marlin_loads_the_exported_files_alike(case, marlin_bin, corpus_file):
    _, path, _, _, folder = case
    assert marlin_rows(marlin_bin, folder / "tokenizer.json", corpus_file, "--add-special") == \
        marlin_rows(marlin_bin, path, corpus_file, "--add-special")


def test_matches_the_transformers_tokenizer(case):
    name, _, _, reference, folder = case
    got = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    want = json.loads(reference.to_str())
    for section in ("normalizer", "pre_tokenizer", "decoder", "added_tokens"):
        assert got[section] == want[section], section
    for key in ("type", "unk_token", "fuse_unk", "byte_fallback", "ignore_merges", "vocab"):
        assert got["model"][key] == want["model"][key], key
    # Recovered SentencePiece merges included: the same list in the same order.
    assert [tuple(m) for m in got["model"]["merges"]] == [tuple(m) for m in want["model"]["merges"]]


def test_transformers_autotokenizer_loads_the_folder(case, corpus):
    from transformers import AutoTokenizer
    from tokenizers import Tokenizer

    _, _, meta, _, folder = case
    auto = AutoTokenizer.from_pretrained(str(folder))
    exported = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokens = meta["tokenizer.ggml.tokens"]
    for key, meta_key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                          ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        token_id = meta.get(f"tokenizer.ggml.{meta_key}")
        if token_id is not None:
            assert auto.convert_tokens_to_ids(getattr(auto, key)) == token_id, key
    assert auto.chat_template == meta.get("tokenizer.chat_template")
    for text in corpus[::25]:
        assert auto(text)["input_ids"] == exported.encode(text).ids, text
        assert auto(text, add_special_tokens=False)["input_ids"] == exported.encode(text, add_special_tokens=False).ids
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    add_bos = meta.get("tokenizer.ggml.add_bos_token", meta["tokenizer.ggml.model"] == "llama")
    assert config["add_bos_token"] == add_bos
    if add_bos:
        assert auto("Hello")["input_ids"][0] == meta["tokenizer.ggml.bos_token_id"]
