"""Live parity of `marlin tokenize` with HF `tokenizers` on a corpus drawn with a different seed
than the committed fixtures, through the GGUF loader and the tokenizer.json loader, plus the
command's output formats and errors."""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import tokenizer_reference as ref  # noqa: E402
from tokenizer_corpus import build_corpus  # noqa: E402

SEED = 7  # the committed fixtures use the default seed


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "corpus.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in build_corpus(SEED)), encoding="ascii")
    return path


@pytest.fixture(scope="session")
def smollm2_meta(default_model):
    return ref.read_metadata(default_model)


def run_marlin(marlin_bin, *args):
    return subprocess.run([str(marlin_bin), "tokenize", *map(str, args)], capture_output=True, timeout=600)


def marlin_rows(marlin_bin, model, corpus_file):
    result = run_marlin(marlin_bin, "--model", model, "--file", corpus_file)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().split("\n") if line]


def assert_parity(rows, reference, corpus_file):
    corpus = [json.loads(line) for line in corpus_file.read_text(encoding="ascii").split("\n") if line]
    assert len(rows) == len(corpus)
    bad = []
    for text, row in zip(corpus, rows):
        want = reference.encode(text, add_special_tokens=False).ids
        if row["ids"] != want or row["decoded"] != reference.decode(want, skip_special_tokens=False):
            bad.append((text, want, row["ids"]))
    assert not bad, f"{len(bad)} of {len(corpus)} differ; first: {bad[0]}"


def test_smollm2_gguf_matches_published_tokenizer(marlin_bin, default_model, smollm2_meta, corpus_file):
    assert_parity(marlin_rows(marlin_bin, default_model, corpus_file), ref.smollm2_published(smollm2_meta), corpus_file)


@pytest.mark.parametrize("pre", [None, "llama-bpe", "qwen2"])
def test_tokenizer_json_matches_hf(marlin_bin, smollm2_meta, corpus_file, tmp_path, pre):
    reference = ref.smollm2_published(smollm2_meta) if pre is None else ref.transformers_gguf(smollm2_meta, pre=pre)
    path = tmp_path / "tokenizer.json"
    reference.save(str(path))
    assert_parity(marlin_rows(marlin_bin, path, corpus_file), reference, corpus_file)


def test_gemma3_gguf_matches_transformers(marlin_bin, corpus_file):
    if not ref.GEMMA3.exists():
        pytest.skip(f"{ref.GEMMA3} is missing")
    reference = ref.transformers_gguf(ref.read_metadata(ref.GEMMA3))
    assert_parity(marlin_rows(marlin_bin, ref.GEMMA3, corpus_file), reference, corpus_file)


def test_json_output_and_flags(marlin_bin, default_model):
    result = run_marlin(marlin_bin, "--model", default_model, "--json", "Hi<|im_end|> there")
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["ids"][1] == 2 and "".join(out["pieces"]) == "Hi<|im_end|> there"
    plain = json.loads(run_marlin(marlin_bin, "--model", default_model, "--json", "--no-parse-special",
                                  "Hi<|im_end|> there").stdout)
    assert 2 not in plain["ids"] and "".join(plain["pieces"]) == "Hi<|im_end|> there"
    text = run_marlin(marlin_bin, "--model", default_model, "Hello world").stdout.decode()
    assert '" world"' in text and text.strip().endswith("2 tokens")


def test_add_special_adds_gemma_bos(marlin_bin):
    if not ref.GEMMA3.exists():
        pytest.skip(f"{ref.GEMMA3} is missing")
    without = json.loads(run_marlin(marlin_bin, "--model", ref.GEMMA3, "--json", "Hello").stdout)["ids"]
    with_bos = json.loads(run_marlin(marlin_bin, "--model", ref.GEMMA3, "--json", "--add-special", "Hello").stdout)["ids"]
    assert with_bos == [2] + without


def test_bad_inputs_are_one_line_errors(marlin_bin, tmp_path):
    missing = run_marlin(marlin_bin, "--model", tmp_path / "nope.gguf", "x")
    assert missing.returncode != 0 and b"does not exist" in missing.stderr
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": {"type": "Unigram", "vocab": []}, "decoder": {"type": "ByteLevel"}}')
    result = run_marlin(marlin_bin, "--model", broken, "x")
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and "Unigram" in result.stderr.decode()


def write_spm_gguf(path, smollm2_meta, model="llama", arch="llama"):
    """A SentencePiece-style GGUF (Llama-2 layout: <unk> <s> </s>, 256 byte tokens, then pieces
    with scores) whose pieces are SmolLM2's tokens respelled with "▁" for spaces."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    unspell = {c: b for b, c in bytes_to_unicode().items()}
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    scores += [0.0] * 256
    types += [6] * 256
    seen = set(tokens)
    for rank, token in enumerate(smollm2_meta["tokenizer.ggml.tokens"]):
        try:
            text = bytes(unspell[c] for c in token).decode("utf-8").replace(" ", "\u2581")
        except (KeyError, UnicodeDecodeError):
            continue
        if text and text not in seen:
            seen.add(text)
            tokens.append(text)
            scores.append(-float(rank))
            types.append(1)
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_sentencepiece_gguf_matches_transformers(marlin_bin, smollm2_meta, corpus_file, tmp_path):
    path = tmp_path / "spm.gguf"
    write_spm_gguf(path, smollm2_meta)
    reference = ref.transformers_gguf(ref.read_metadata(path))
    assert_parity(marlin_rows(marlin_bin, path, corpus_file), reference, corpus_file)


def test_unsupported_gguf_tokenizer_is_an_error(marlin_bin, smollm2_meta, tmp_path):
    path = tmp_path / "bert.gguf"
    write_spm_gguf(path, smollm2_meta, model="bert")
    result = run_marlin(marlin_bin, "--model", path, "x")
    assert result.returncode == 1 and b"'bert' is not supported" in result.stderr
