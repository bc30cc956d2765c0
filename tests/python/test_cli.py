"""The marlin command as a user runs it: answers, chat, determinism, and one-line errors."""
import json
import os
import shutil
import subprocess

import pytest


def marlin(binary, *args, stdin=None, timeout=300):
    return subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr


def test_run_answers_with_only_the_answer(marlin_bin):
    r = marlin(marlin_bin, "run", "--temperature", "0", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "<|im_" not in r.stdout and "assistant" not in r.stdout.lower()[:20]


def test_run_raw_continues_text(marlin_bin):
    r = marlin(marlin_bin, "run", "--raw", "--temperature", "0", "--max-tokens", "8", "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


def test_run_reads_prompt_from_stdin(marlin_bin):
    r = marlin(marlin_bin, "run", "--temperature", "0", "-", stdin="What is the capital of France?")
    assert r.returncode == 0 and "Paris" in r.stdout


def test_same_seed_same_text(marlin_bin):
    args = ["run", "--temperature", "1.0", "--max-tokens", "24", "Write a poem about the sea."]
    first = marlin(marlin_bin, *args, "--seed", "5")
    second = marlin(marlin_bin, *args, "--seed", "5")
    assert first.returncode == 0 and first.stdout == second.stdout
    others = {marlin(marlin_bin, *args, "--seed", str(s)).stdout for s in (6, 7)}
    assert others != {first.stdout}


def test_max_tokens_and_stop(marlin_bin):
    r = marlin(marlin_bin, "run", "-v", "--temperature", "0", "--max-tokens", "3", "Tell me about Paris.")
    assert r.returncode == 0
    assert "answer: 3 tokens" in r.stderr
    r = marlin(marlin_bin, "run", "--temperature", "0", "--stop", "Paris", "What is the capital of France?")
    assert r.returncode == 0 and "Paris" not in r.stdout


def test_chat_keeps_the_conversation(marlin_bin):
    script = "Hi, I am Alice.\nWhat is my name?\n/reset\nWhat is my name?\n/exit\nnot read\n"
    r = marlin(marlin_bin, "chat", "--temperature", "0", "--max-tokens", "40", stdin=script)
    assert r.returncode == 0, r.stderr
    before, after = r.stdout.split("(conversation cleared)")
    assert before.count("Alice") >= 2  # greeted, then remembered when asked
    assert "Alice" not in after        # forgotten after /reset
    assert "not read" not in r.stdout


def test_bench_json(marlin_bin):
    r = marlin(marlin_bin, "bench", "--prompt-tokens", "16", "--gen-tokens", "4", "--reps", "1", "--json")
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures["prefill_tokens_per_s"] > 0 and figures["decode_tokens_per_s"] > 0
    assert figures["copy_bandwidth_bytes_per_s"] > 1e8
    assert figures["warm_up_prefill_seconds"] > 0
    step = figures["decode_step_seconds"]
    assert step == pytest.approx(1 / figures["decode_tokens_per_s"])
    bound = figures["weight_bytes_per_token"] / figures["copy_bandwidth_bytes_per_s"]
    assert figures["decode_step_vs_bandwidth_bound"] == pytest.approx(step / bound)


def test_bench_batch_list(marlin_bin):
    r = marlin(marlin_bin, "bench", "--synthetic", "tiny", "--prompt-tokens", "8", "--gen-tokens", "4", "--reps", "1",
               "--batch", "1,3", "--json")
    assert r.returncode == 0, r.stderr
    runs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [run["batch"] for run in runs] == [1, 3]
    assert runs[0]["prefill_tokens_per_s"] > 0 and runs[1]["prompt_tokens"] == 0
    assert all(run["decode_tokens_per_s"] > 0 for run in runs)


def test_bench_moe_counts_only_the_routed_experts(marlin_bin):
    r = marlin(marlin_bin, "bench", "--synthetic", "tiny-moe", "--format", "f16", "--prompt-tokens", "8",
               "--gen-tokens", "2", "--reps", "1", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[0])["weight_bytes_per_token"]
    # tiny-moe in f16 (norms f32): vocab 512, d 256, 4 q heads and 2 kv heads of 64, 2 layers of 8
    # experts of width 128, 2 chosen per token.
    vocab, d, qd, kvd, fe, experts, top_k, layers = 512, 256, 256, 128, 128, 8, 2, 2
    per_layer = (2 * d * 4 + (qd + 2 * kvd) * d * 2 + d * qd * 2 + 2 * 64 * 4 + experts * d * 2
                 + top_k * 3 * fe * d * 2)
    assert got == d * 2 + vocab * d * 2 + d * 4 + layers * per_layer


def test_bench_glm_counts_the_shared_expert_whole(marlin_bin):
    r = marlin(marlin_bin, "bench", "--synthetic", "tiny-glm", "--format", "f16", "--prompt-tokens", "8",
               "--gen-tokens", "2", "--reps", "1", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[0])["weight_bytes_per_token"]
    # tiny-glm in f16 (norms and the score bias f32): vocab 512, d 256, 4 heads, q_lora 128,
    # kv_lora 128, qk_nope 32, qk_rope 16, v 32; layer 0 a dense MLP of 512, layer 1 8 experts of
    # 128 (2 chosen per token) and one shared expert of 128.
    vocab, d, heads, q_lora, kv_lora, nope, rope, v, f, experts, fe, top_k = 512, 256, 4, 128, 128, 32, 16, 32, 512, 8, 128, 2
    attention = (2 * d * 4 + q_lora * 4 + kv_lora * 4 + q_lora * d * 2 + heads * (nope + rope) * q_lora * 2
                 + (kv_lora + rope) * d * 2 + heads * (nope + v) * kv_lora * 2 + d * heads * v * 2)
    dense = 3 * f * d * 2
    sparse = experts * d * 2 + experts * 4 + top_k * 3 * fe * d * 2 + 3 * fe * d * 2
    assert got == d * 2 + vocab * d * 2 + d * 4 + 2 * attention + dense + sparse


@pytest.mark.parametrize("args", [
    ["frobnicate"],
    [],
    ["run"],
    ["run", "--temperature", "-1", "hi"],
    ["run", "--top-p", "2", "hi"],
    ["run", "--max-tokens", "abc", "hi"],
    ["run", "--no-such-flag", "hi"],
    ["run", "--model", "/nonexistent/model.gguf", "hi"],
    ["bench", "--prompt-tokens", "-5"],
    ["inspect", "/nonexistent.gguf"],
])
def test_bad_invocations_give_one_line_errors(marlin_bin, args):
    assert_one_line_error(marlin(marlin_bin, *args))


@pytest.mark.parametrize("corruption", ["truncated", "bad_magic", "garbage", "empty"])
def test_corrupt_model_files_give_one_line_errors(marlin_bin, default_model, tmp_path, corruption):
    data = default_model.read_bytes()[:1 << 20]
    path = tmp_path / "model.gguf"
    if corruption == "truncated":
        path.write_bytes(data[:5000])
    elif corruption == "bad_magic":
        path.write_bytes(b"GGUX" + data[4:])
    elif corruption == "garbage":
        path.write_bytes(os.urandom(4096))
    else:
        path.write_bytes(b"")
    for command in (["run", "--model", str(path), "hi"], ["bench", "--model", str(path)], ["inspect", str(path)],
                    ["tokenize", "--model", str(path), "hi"]):
        assert_one_line_error(marlin(marlin_bin, *command))


def test_missing_default_model_says_how_to_fetch_it(marlin_bin, tmp_path):
    bin_dir = tmp_path / "build"
    bin_dir.mkdir()
    shutil.copy(marlin_bin, bin_dir / "marlin")
    r = subprocess.run([str(bin_dir / "marlin"), "run", "hi"], capture_output=True, text=True, cwd=tmp_path)
    assert_one_line_error(r)
    assert "scripts/setup.sh" in r.stderr
