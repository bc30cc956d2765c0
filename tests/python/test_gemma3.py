"""The real Gemma-3-270M GGUF through the marlin command: answers, chat, and greedy tokens against
llama.cpp (llama-cpp-python) on the same file.

The file is the pretrained (not instruction-tuned) 270M model: asked "What is the capital of
France?" in Gemma's chat format it repeats the question (transformers on the same weights does the
same; tests/model/test_gemma3_real.cpp checks those tokens), so the answer is asked for as text
to complete, where it says Paris.
"""
import json
import pathlib
import subprocess

import pytest

from conftest import ROOT

GEMMA = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def gemma():
    if not GEMMA.exists():
        pytest.fail(f"{GEMMA} is missing: run scripts/setup.sh first")
    return GEMMA


def marlin(binary, *args, stdin=None, timeout=600):
    return subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True, timeout=timeout)


def test_completes_the_capital_of_france(marlin_bin, gemma):
    r = marlin(marlin_bin, "run", "-m", str(gemma), "--raw", "--temperature", "0", "--max-tokens", "4",
               "Question: What is the capital of France?\nAnswer:")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris"), r.stdout


def test_chat_uses_gemmas_turns(marlin_bin, gemma):
    # The pretrained model echoes the question as its answer (see the module note).
    r = marlin(marlin_bin, "run", "-m", str(gemma), "-v", "--temperature", "0", "--max-tokens", "8",
               "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("What is the capital of France?"), r.stdout
    assert "prompt: 16 tokens" in r.stderr  # <bos><start_of_turn>user\n … <end_of_turn>\n<start_of_turn>model\n

    r = marlin(marlin_bin, "chat", "-m", str(gemma), "--temperature", "0", "--max-tokens", "8",
               stdin="The Eiffel Tower is in which city?\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert "<start_of_turn>" not in r.stdout and "<end_of_turn>" not in r.stdout


# Prompts whose first greedy tokens have clear margins in the fp32 reference (no near ties).
LLAMA_PROMPTS = [("def fibonacci(n):", 8), ("The Eiffel Tower is located in the city of", 4)]


@pytest.mark.parametrize("prompt,tokens", LLAMA_PROMPTS)
def test_greedy_tokens_match_llama_cpp(marlin_bin, gemma, prompt, tokens):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(gemma), n_ctx=128, n_threads=2, verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    theirs = llm.create_completion(ids, max_tokens=tokens, temperature=0.0, top_k=1)["choices"][0]["text"]
    r = marlin(marlin_bin, "run", "-m", str(gemma), "--raw", "--temperature", "0", "--max-tokens", str(tokens), prompt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip("\n") == theirs.rstrip("\n")


def perplexity(binary, model):
    r = marlin(binary, "perplexity", str(model), "--chunks", "2", "--ctx", "128", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["perplexity"]


def test_quantized_checkpoint_keeps_the_model(marlin_bin, gemma, tmp_path):
    # keep: the GGUF's blocks as they are, so the checkpoint computes exactly what the GGUF does
    # (norm weights stored as 1 + w, the embedding scale carried in the checkpoint's config).
    kept, int8 = tmp_path / "keep.marlin", tmp_path / "int8.marlin"
    for out, fmt in ((kept, "keep"), (int8, "int8-g32")):
        r = marlin(marlin_bin, "quantize", str(gemma), str(out), "--format", fmt)
        assert r.returncode == 0, r.stderr
    base = perplexity(marlin_bin, gemma)
    assert perplexity(marlin_bin, kept) == base
    # int8-g32 of weights already at 4-6 bits: within 2 % of the GGUF's perplexity.
    assert perplexity(marlin_bin, int8) == pytest.approx(base, rel=0.02)
    r = marlin(marlin_bin, "run", "-m", str(int8), "--raw", "--temperature", "0", "--max-tokens", "4",
               "Question: What is the capital of France?\nAnswer:")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris"), r.stdout
