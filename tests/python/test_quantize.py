"""marlin quantize on the default model: formats, conversion without loss, and errors."""
import json
import subprocess

import gguf
import numpy as np
import pytest
from safetensors import deserialize, safe_open

from tiny_models import FIXTURES, tiny_model_with_tokenizer


def marlin(binary, *args, timeout=600):
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def perplexity(binary, model, chunks=2):
    r = marlin(binary, "perplexity", model, "--chunks", chunks, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["perplexity"]


@pytest.fixture(scope="module")
def int4_rtn(marlin_bin, default_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int4.marlin"
    r = marlin(marlin_bin, "quantize", default_model, out, "--format", "int4", "--group-size", "128")
    assert r.returncode == 0, r.stderr
    assert "210 int4-g128" in r.stdout and "int8-g32" in r.stdout
    return out


def test_inspect_shows_the_checkpoint(marlin_bin, default_model, int4_rtn):
    r = marlin(marlin_bin, "inspect", int4_rtn, "--json", "--tensors")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    reader = gguf.GGUFReader(str(default_model))
    assert report["parameters"] == sum(int(t.n_elements) for t in reader.tensors)
    assert report["formats"]["int4-g128"]["tensors"] == 210
    # 4 bits per weight plus one fp16 scale per 128 (576-wide rows: 4 full groups and one of 64).
    int4 = [t for t in report["tensors"] if t["format"] == "int4-g128"]
    assert all(t["bytes"] == t["rows"] * (t["cols"] // 2 + 2 * -(-t["cols"] // 128)) for t in int4)
    assert report["tensor_bytes"] == sum(t["bytes"] for t in report["tensors"])


def test_quantized_model_answers(marlin_bin, int4_rtn):
    r = marlin(marlin_bin, "run", "--model", int4_rtn, "--temperature", "0", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout


HF_TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    _, _, layer, rest = hf.split(".", 3)
    return f"blk.{layer}.{HF_TO_GGUF[rest.removesuffix('.weight')]}.weight"


def hf_rows_from_gguf(rows: np.ndarray, heads: int) -> np.ndarray:
    """GGUF stores each Q/K head's rotary pairs adjacent (2j, 2j+1); HF pairs row j with j + D/2."""
    d = rows.shape[0] // heads
    i = np.arange(d)
    within = 2 * (i % (d // 2)) + i // (d // 2)
    return rows[(np.arange(heads)[:, None] * d + within[None, :]).reshape(-1)]


def test_keep_converts_without_loss(marlin_bin, default_model, tmp_path):
    out = tmp_path / "keep.marlin"
    r = marlin(marlin_bin, "quantize", default_model, out, "--format", "keep")
    assert r.returncode == 0, r.stderr
    assert "210 q4_1" in r.stdout and "1 q8_0" in r.stdout
    # Independent check with the reference readers: every stored byte is the GGUF's, Q/K rows reordered.
    reader = gguf.GGUFReader(str(default_model))
    source = {t.name: t for t in reader.tensors}
    heads = {"attn_q": int(reader.fields["llama.attention.head_count"].parts[-1][0]),
             "attn_k": int(reader.fields["llama.attention.head_count_kv"].parts[-1][0])}
    stored = dict(deserialize(out.read_bytes()))
    with safe_open(str(out), framework="numpy") as f:
        doc = json.loads(f.metadata()["marlin"])
    assert len(doc["tensors"]) == len(source)
    for name, entry in doc["tensors"].items():
        t = source[gguf_name(name)]
        assert entry["format"] == t.tensor_type.name.lower(), name
        want = np.ascontiguousarray(t.data)
        kind = gguf_name(name).split(".")[-2]
        if kind in heads:
            want = hf_rows_from_gguf(want, heads[kind])
        assert bytes(stored[entry["parts"]["codes"]]["data"]) == want.tobytes(), name


def test_int8_stays_close_and_int4_is_smaller(marlin_bin, default_model, int4_rtn, tmp_path):
    out = tmp_path / "int8.marlin"
    assert marlin(marlin_bin, "quantize", default_model, out, "--format", "int8-pc").returncode == 0
    base = perplexity(marlin_bin, default_model)
    assert perplexity(marlin_bin, out) == pytest.approx(base, rel=0.02)
    assert int4_rtn.stat().st_size < default_model.stat().st_size < out.stat().st_size


def test_gptq_runs_with_rules_and_sharding(marlin_bin, default_model, tmp_path):
    out = tmp_path / "gptq.marlin"
    r = marlin(marlin_bin, "quantize", default_model, out, "--format", "int4-g64-act", "--method", "gptq",
               "--calibration-samples", "2", "--calibration-ctx", "64", "--rules", "layers.0.=int8-pc",
               "--shard-size", "0.03")
    assert r.returncode == 0, r.stderr
    files = sorted(tmp_path.glob("gptq-*.marlin"))
    assert len(files) >= 2, r.stdout
    assert "int4-g64-act" in r.stdout and "int8-pc" in r.stdout
    r = marlin(marlin_bin, "run", "--model", files[0], "--temperature", "0", "--max-tokens", "8", "Hello")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [
    ["OUT.bin", "--format", "int4"],
    ["OUT.marlin", "--format", "int5"],
    ["OUT.marlin", "--format", "int4-g64", "--group-size", "128"],
    ["OUT.marlin", "--format", "int4-g128-act"],
    ["OUT.marlin", "--format", "keep", "--method", "gptq"],
    ["OUT.marlin", "--format", "int4", "--method", "awq"],
    ["OUT.marlin", "--format", "int4", "--rules", "nonsense"],
    ["OUT.marlin", "--format", "int4", "--group-size", "100"],
    ["OUT.marlin", "--format", "int4", "--moe-bits", "auto"],  # no --target-bits
    ["OUT.marlin", "--format", "int4", "--moe-bits", "5"],
    ["OUT.marlin", "--format", "int4", "--moe-bits", "4", "--target-bits", "3"],
    ["OUT.marlin", "--format", "int4", "--target-bits", "3"],  # no --moe-bits
    ["OUT.marlin", "--format", "int4", "--moe-bits", "auto", "--target-bits", "3", "--min-bits", "4", "--max-bits", "3"],
    ["OUT.marlin", "--format", "int4", "--moe-bits", "auto", "--target-bits", "1.5"],
    ["OUT.marlin", "--format", "int4", "--moe-bits", "auto", "--target-bits", "6", "--max-bits", "7"],  # widths 2-4
    ["OUT.marlin", "--format", "int4", "--moe-bits", "auto", "--target-bits", "3", "--min-bits", "5", "--max-bits", "7"],
    ["OUT.marlin", "--format", "int4", "--moe-bits", "4"],  # the default model has no experts
    ["OUT.marlin", "--format", "trellis"],  # no --bits
    ["OUT.marlin", "--format", "trellis", "--bits", "0.5"],
    ["OUT.marlin", "--format", "trellis", "--bits", "9"],
    ["OUT.marlin", "--format", "trellis", "--bits", "3", "--group-size", "128"],
    ["OUT.marlin", "--format", "int4", "--bits", "3"],
    ["OUT.marlin", "--format", "trellis9"],
    ["OUT.marlin", "--format", "int4", "--method", "gptq", "--memory-budget", "lots"],
    ["OUT.marlin", "--format", "int4", "--method", "gptq", "--memory-budget", "0"],
    ["OUT.marlin", "--format", "int4", "--method", "gptq", "--memory-budget", "-1G"],
    ["OUT.marlin", "--format", "int4", "--memory-budget", "1G"],  # RTN collects no Hessians
])
def test_bad_quantize_invocations(marlin_bin, default_model, tmp_path, args):
    args = [str(tmp_path / a) if a.startswith("OUT") else a for a in args]
    r = marlin(marlin_bin, "quantize", default_model, *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_missing_input(marlin_bin, tmp_path):
    r = marlin(marlin_bin, "quantize", tmp_path / "nope.gguf", tmp_path / "x.marlin", "--format", "int4")
    assert r.returncode != 0 and r.stderr.startswith("error: ")


MOE_DIR = FIXTURES / "tiny_mixtral"


def test_moe_bits_auto_writes_and_reports_the_allocation(marlin_bin, tmp_path):
    model, text = tiny_model_with_tokenizer(tmp_path / "tiny_mixtral")
    out = tmp_path / "auto.marlin"
    r = marlin(marlin_bin, "quantize", model, out, "--format", "int4-g32", "--moe-bits", "auto", "--target-bits",
               "3", "--calibration", text, "--calibration-samples", "8", "--calibration-ctx", "64")
    assert r.returncode == 0, r.stderr
    assert "expert bits (auto: target 3.000, widths 2-8" in r.stdout, r.stdout
    assert "16 experts" in r.stdout
    report = json.loads(marlin(marlin_bin, "inspect", out, "--json", "--tensors").stdout)
    plan = report["expert_bits"]
    assert plan["mode"] == "auto" and plan["average_bits"] <= 3.0
    assert sum(plan["experts_per_width"].values()) == 16
    # Every expert tensor has the format of its width, and the average is what the tensors hold.
    widths = {t["name"]: int(t["format"][3]) for t in report["tensors"] if ".experts." in t["name"]}
    assert len(widths) == 48
    for layer, bits in plan["layers"].items():
        for e, b in enumerate(bits):
            for w in ("w1", "w2", "w3"):
                assert widths[f"model.layers.{layer}.block_sparse_moe.experts.{e}.{w}.weight"] == b
    assert abs(sum(widths.values()) / 48 - plan["average_bits"]) < 1e-9
    text_report = marlin(marlin_bin, "inspect", out).stdout
    assert "expert bits (auto" in text_report and "layer   1:" in text_report
    r = marlin(marlin_bin, "run", "--model", out, "--temperature", "0", "--max-tokens", "4", "expert")
    assert r.returncode == 0, r.stderr


def test_trellis_with_calibration_end_to_end(marlin_bin, tmp_path):
    """--format trellis --bits 3 --method gptq: every linear of the blocks trellis3 (experts
    included; routers, embeddings and the head as the rules keep them), and the checkpoint runs."""
    model, text = tiny_model_with_tokenizer(tmp_path / "tiny_mixtral")
    out = tmp_path / "t3.marlin"
    r = marlin(marlin_bin, "quantize", model, out, "--format", "trellis", "--bits", "3", "--method", "gptq",
               "--calibration", text, "--calibration-samples", "8", "--calibration-ctx", "64")
    assert r.returncode == 0, r.stderr
    report = json.loads(marlin(marlin_bin, "inspect", out, "--json", "--tensors").stdout)
    formats = {t["name"]: t["format"] for t in report["tensors"]}
    experts = [n for n in formats if ".experts." in n]
    assert len(experts) == 48 and all(formats[n] == "trellis3" for n in experts)
    assert all(formats[f"model.layers.{l}.self_attn.{p}_proj.weight"] == "trellis3" for l in (0, 1) for p in "qkvo")
    r = marlin(marlin_bin, "run", "--model", out, "--temperature", "0", "--max-tokens", "4", "expert")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("fixture, planned_tensors, measure", [
    ("tiny_mixtral", 48 + 8, "output error"),  # experts: each linear's own output error
    ("tiny_qwen3", 2 * 7, "trial"),            # dense: a trial per linear, with a progress bar
])
def test_trellis_fractional_bits_plan_widths_per_tensor(marlin_bin, tmp_path, fixture, planned_tensors, measure):
    """--bits 2.5: whole widths per linear (2 to 8), the weight-weighted average at most 2.5 and
    printed; the checkpoint holds them and runs."""
    model, text = tiny_model_with_tokenizer(tmp_path / fixture, fixture)
    out = tmp_path / "t25.marlin"
    r = marlin(marlin_bin, "quantize", model, out, "--format", "trellis", "--bits", "2.5", "--calibration", text,
               "--calibration-samples", "8", "--calibration-ctx", "64")
    assert r.returncode == 0, r.stderr
    # The trials run on a GPU where there is one ("by trial on cuda"), else on the CPU.
    said = "by output error): average" if measure == "output error" else "by trial on "
    assert f"trellis bits (target 2.500, widths 2-8, {said}" in r.stdout, r.stdout
    assert ("sensitivity" in r.stderr) == (measure == "trial"), r.stderr
    report = json.loads(marlin(marlin_bin, "inspect", out, "--json", "--tensors").stdout)
    planned = [t for t in report["tensors"] if t["format"].startswith("trellis")]
    widths = {int(t["format"][len("trellis"):]) for t in planned}
    assert len(planned) == planned_tensors and widths <= set(range(2, 9)) and len(widths) >= 2
    weights = sum(t["rows"] * t["cols"] for t in planned)
    average = sum(t["rows"] * t["cols"] * int(t["format"][len("trellis"):]) for t in planned) / weights
    assert 2.0 < average <= 2.5
    assert f"average {average:.3f}" in r.stdout
    r = marlin(marlin_bin, "run", "--model", out, "--temperature", "0", "--max-tokens", "4", "expert")
    assert r.returncode == 0, r.stderr


def test_moe_bits_uniform(marlin_bin, tmp_path):
    out = tmp_path / "u3.marlin"
    r = marlin(marlin_bin, "quantize", MOE_DIR, out, "--format", "int4-g32", "--moe-bits", "3")
    assert r.returncode == 0, r.stderr
    assert "48 int3-g32" in r.stdout and "expert bits (uniform)" in r.stdout
    report = json.loads(marlin(marlin_bin, "inspect", out, "--json").stdout)
    assert report["expert_bits"]["experts_per_width"] == {"3": 16}
    assert report["formats"]["int3-g32"]["tensors"] == 48


def test_memory_budget_splits_hessians_without_changing_the_checkpoint(marlin_bin, tmp_path):
    """GPTQ on the tiny Mixtral: the default budget (a share of MemAvailable) is printed; 40K (one
    expert's two Hessians at a time) makes every block run the calibration text 11 times, and the
    tensors come out byte for byte the same (the checkpoint's random id aside)."""
    model, text = tiny_model_with_tokenizer(tmp_path / "tiny_mixtral")
    common = ["--format", "int4-g32", "--method", "gptq", "--calibration", text, "--calibration-samples", "4",
              "--calibration-ctx", "64"]
    r = marlin(marlin_bin, "quantize", model, tmp_path / "default.marlin", *common)
    assert r.returncode == 0, r.stderr
    assert "quantize: memory budget for a block's Hessians: " in r.stderr and "% of the " in r.stderr, r.stderr
    assert "several passes" not in r.stderr
    r = marlin(marlin_bin, "quantize", model, tmp_path / "split.marlin", *common, "--memory-budget", "40K")
    assert r.returncode == 0, r.stderr
    assert "quantize: memory budget for a block's Hessians: 40.0 KiB\n" in r.stderr, r.stderr
    assert ("quantize: 2 of 2 blocks collect their Hessians in several passes over the calibration text (up to 11)"
            in r.stderr), r.stderr
    split, default = (dict(deserialize((tmp_path / f).read_bytes())) for f in ("split.marlin", "default.marlin"))
    assert len(split) == 125 and split == default
