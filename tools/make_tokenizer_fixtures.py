#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures (tests/fixtures/tokenizer/) from HF `tokenizers`:

  corpus.jsonl                   the strings of tools/tokenizer_corpus.py, one JSON string a line
  smollm2_tokenizer.json         SmolLM2's tokenizer as its published tokenizer.json is configured
                                 (vocabulary and merges from the GGUF)
  smollm2_pre_variants.json      the pre_tokenizer JSON transformers uses for the same vocabulary
                                 with tokenizer.ggml.pre = llama-bpe (Llama-3 split) and qwen2, and
                                 the expected file of each (one file when their ids coincide: SmolLM2
                                 has no multi-digit tokens, so grouping digits by 3 or 1 ties)
  expected_<name>.jsonl          per corpus line: {"ids": [...]} plus "decoded" when HF's
                                 decode(ids) differs from the input
  pre_splits.jsonl               the words the Llama-3 and Qwen2 split regexes alone cut corpus
                                 lines into, for the first 300 lines where the two differ (checks
                                 the regexes directly, digit grouping included)

  python3 tools/make_tokenizer_fixtures.py     # needs models/ (scripts/setup.sh) ; ~1 minute
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer_reference as ref  # noqa: E402
from tokenizer_corpus import build_corpus  # noqa: E402

OUT = ref.ROOT / "tests" / "fixtures" / "tokenizer"


def expected_lines(tokenizer, corpus):
    lines = []
    for text in corpus:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        row = {"ids": ids}
        decoded = tokenizer.decode(ids, skip_special_tokens=False)
        if decoded != text:
            row["decoded"] = decoded
        lines.append(json.dumps(row, separators=(",", ":")) + "\n")
    return lines


def write_expected(name, tokenizer, corpus):
    lines = expected_lines(tokenizer, corpus)
    with open(OUT / f"expected_{name}.jsonl", "w", encoding="ascii") as f:
        f.writelines(lines)
    return lines


def write_pre_splits(corpus, patterns):
    from tokenizers import Regex, pre_tokenizers

    splitters = {name: pre_tokenizers.Split(Regex(p), behavior="isolated") for name, p in patterns.items()}
    with open(OUT / "pre_splits.jsonl", "w", encoding="ascii") as f:
        rows = 0
        for index, text in enumerate(corpus):
            row = {"line": index}
            for name, splitter in splitters.items():
                row[name] = [piece for piece, _ in splitter.pre_tokenize_str(text)]
            if len(set(json.dumps(v) for k, v in row.items() if k != "line")) < 2:
                continue
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
            rows += 1
            if rows == 300:
                break


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus()
    with open(OUT / "corpus.jsonl", "w", encoding="ascii") as f:
        for text in corpus:
            f.write(json.dumps(text) + "\n")

    smol_meta = ref.read_metadata(ref.SMOLLM2)
    published = ref.smollm2_published(smol_meta)
    published.save(str(OUT / "smollm2_tokenizer.json"), pretty=False)
    write_expected("smollm2", published, corpus)

    variants = {}
    written = {}
    patterns = {}
    base = json.loads(published.to_str())
    for name, pre in (("llama3", "llama-bpe"), ("qwen2", "qwen2")):
        tok = ref.transformers_gguf(smol_meta, pre=pre)
        spec = json.loads(tok.to_str())
        # Everything but the pre-tokenizer must agree, or the C++ test would compare different tokenizers.
        assert spec["model"]["vocab"] == base["model"]["vocab"], name
        assert [tuple(m) for m in spec["model"]["merges"]] == [tuple(m) for m in base["model"]["merges"]], name
        assert spec["added_tokens"] == base["added_tokens"], name
        assert spec["normalizer"] is None and spec["decoder"]["type"] == "ByteLevel", name
        patterns[name] = spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
        lines = expected_lines(tok, corpus)
        key = "".join(lines)
        if key not in written:
            written[key] = f"expected_smollm2_{name}.jsonl"
            with open(OUT / written[key], "w", encoding="ascii") as f:
                f.writelines(lines)
        variants[name] = {"pre_tokenizer": spec["pre_tokenizer"], "expected": written[key]}
    write_pre_splits(corpus, patterns)
    with open(OUT / "smollm2_pre_variants.json", "w") as f:
        json.dump(variants, f, indent=1)

    gemma = ref.transformers_gguf(ref.read_metadata(ref.GEMMA3))
    write_expected("gemma3", gemma, corpus)
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:>9}  {p.relative_to(ref.ROOT)}")


if __name__ == "__main__":
    main()
