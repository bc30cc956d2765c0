#!/usr/bin/env python3
"""Reference logits for the mixture-of-experts parity tests, computed with transformers.

Writes tiny random Mixtral and Qwen3-MoE checkpoints as Hugging Face folders (config.json +
model.safetensors in fp32, as transformers' save_pretrained writes them: per-expert weights) under
tests/fixtures/model/<name>/, and next to them <name>.json + <name>.logits.f64: the logits
transformers computes for every position of a 100-token sequence, in float64 (the expected values)
and in float32 (whose distance to float64 sets the C++ tests' tolerance).

  tiny_mixtral          2 layers, 8 experts, top-2 (Mixtral always renormalizes the top-k weights);
                        also written as tiny_mixtral.gguf (llama.cpp's layout: 3-D expert tensors)
  tiny_qwen3_moe        3 layers, 8 experts, top-2, norm_topk_prob false, layer 1 dense (mlp_only_layers)
  tiny_qwen3_moe_norm   2 layers, both sparse, norm_topk_prob true; also written as tiny_qwen3_moe_norm.gguf

A token whose k-th and (k+1)-th router probabilities are nearly equal could be routed differently
by arithmetic that differs only in rounding; the seed is advanced until every routing decision of
the reference has a margin of at least MIN_MARGIN.

Also writes tiny_mixtral_int4.json: the logits of the same Mixtral with its experts' weights
rounded to nearest on marlin's int4-g32 grid (marlin_int4_g32 below), for the quantized test.

Needs torch, transformers, numpy, safetensors. Run from the repository root:
  python3 tools/make_moe_fixtures.py --out tests/fixtures/model
"""
import argparse
import json
import pathlib
import shutil

import gguf
import numpy as np
import torch
from make_llama_fixtures import permute_for_gguf
from transformers import MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

MIN_MARGIN = 1e-3
TOKENS = 100

COMMON = dict(vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
              num_experts_per_tok=2, attn_implementation="eager", experts_implementation="eager")

VARIANTS = {
    "tiny_mixtral": (MixtralForCausalLM, lambda: MixtralConfig(
        intermediate_size=32, num_hidden_layers=2, num_local_experts=8, rope_theta=10000.0, **COMMON)),
    "tiny_qwen3_moe": (Qwen3MoeForCausalLM, lambda: Qwen3MoeConfig(
        intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3, num_experts=8, head_dim=32,
        norm_topk_prob=False, mlp_only_layers=[1], rope_theta=10000.0, **COMMON)),
    "tiny_qwen3_moe_norm": (Qwen3MoeForCausalLM, lambda: Qwen3MoeConfig(
        intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2, num_experts=8, head_dim=32,
        norm_topk_prob=True, rope_theta=10000.0, **COMMON)),
}


def routers(model):
    return [m for n, m in model.named_modules() if n.endswith("mlp.gate")]


def logits_for(model, ids, dtype, margins=None):
    """Logits of every position; with `margins`, appends each routing decision's margin."""
    m = model.to(dtype)
    handles = []
    if margins is not None:
        def hook(module, _args, output):
            probs = torch.softmax(output[0].to(torch.float64), dim=-1)
            top = torch.sort(probs, dim=-1, descending=True).values
            k = module.top_k
            margins.append(float((top[:, k - 1] - top[:, k]).min()))
        handles = [r.register_forward_hook(hook) for r in routers(m)]
    with torch.no_grad():
        out = m(torch.tensor([ids], dtype=torch.long)).logits[0]
    for h in handles:
        h.remove()
    return out.to(torch.float64).numpy()


def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif n.endswith("mlp.gate.weight"):
                p.copy_(0.3 * torch.randn_like(p))  # routers spread their probabilities
            else:
                p.copy_(0.08 * torch.randn_like(p))


def fp16_at_least(s: np.ndarray) -> np.ndarray:
    """The least fp16 value >= s, as fp32 (marlin stores group scales so)."""
    h = s.astype(np.float16)
    up = h.astype(np.float32) < s
    h[up] = np.nextafter(h[up], np.float16(np.inf))
    return h.astype(np.float32)


def marlin_int4_g32(w: np.ndarray) -> np.ndarray:
    """w rounded to marlin's symmetric int4-g32 grid (quant/group_grid.h), in fp32 as marlin
    computes it: of the scales max(-lo/8, hi/7) and max(-lo/8.5, hi/7.5) (rounded up to fp16),
    the one of smaller squared error (the first on ties); codes round half to even."""
    rows, cols = w.shape
    g = w.astype(np.float32).reshape(rows, cols // 32, 32)
    lo = np.minimum(g.min(axis=-1, keepdims=True), np.float32(0))
    hi = np.maximum(g.max(axis=-1, keepdims=True), np.float32(0))

    def rounded(scale):
        safe = np.where(scale > 0, scale, np.float32(1))
        codes = np.clip(np.rint(g / safe) + np.float32(8), 0, 15)
        return np.where(scale > 0, scale * (codes - np.float32(8)), np.float32(0)).astype(np.float32)

    s1 = fp16_at_least(np.maximum(-lo / np.float32(8), hi / np.float32(7)))
    s2 = fp16_at_least(np.maximum(-lo / np.float32(8.5), hi / np.float32(7.5)))
    r1, r2 = rounded(s1), rounded(s2)
    e1 = ((g.astype(np.float64) - r1) ** 2).sum(axis=-1, keepdims=True)
    e2 = ((g.astype(np.float64) - r2) ** 2).sum(axis=-1, keepdims=True)
    return np.where((s1 != s2) & (e2 < e1), r2, r1).reshape(rows, cols)


def write_moe_gguf(path: pathlib.Path, model, config, arch: str):
    """The model as a llama.cpp-style GGUF: "llama" with expert metadata for Mixtral (Q/K rows
    permuted for adjacent-pair RoPE), "qwen3moe" for Qwen3-MoE (Q/K as they are, per-head norms);
    each layer's router as ffn_gate_inp and its experts as 3-D tensors ffn_{gate,up,down}_exps."""
    w = gguf.GGUFWriter(str(path), arch)
    qwen = arch == "qwen3moe"
    head_dim = config.head_dim if qwen else config.hidden_size // config.num_attention_heads
    w.add_name(path.stem)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_rope_dimension_count(head_dim)
    w.add_expert_count(config.num_local_experts if not qwen else config.num_experts)
    w.add_expert_used_count(config.num_experts_per_tok)
    f = config.moe_intermediate_size if qwen else config.intermediate_size
    if qwen:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_expert_feed_forward_length(f)
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(config.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = sd[p + "self_attn.q_proj.weight"], sd[p + "self_attn.k_proj.weight"]
        if not qwen:
            q, k = permute_for_gguf(q, config.num_attention_heads), permute_for_gguf(k, config.num_key_value_heads)
        w.add_tensor(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(b + "attn_q.weight", q)
        w.add_tensor(b + "attn_k.weight", k)
        w.add_tensor(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        if qwen:
            w.add_tensor(b + "attn_q_norm.weight", sd[p + "self_attn.q_norm.weight"])
            w.add_tensor(b + "attn_k_norm.weight", sd[p + "self_attn.k_norm.weight"])
        w.add_tensor(b + "ffn_gate_inp.weight", sd[p + "mlp.gate.weight"])
        gate_up = sd[p + "mlp.experts.gate_up_proj"]  # experts × [gate; up] × hidden
        w.add_tensor(b + "ffn_gate_exps.weight", np.ascontiguousarray(gate_up[:, :f, :]))
        w.add_tensor(b + "ffn_up_exps.weight", np.ascontiguousarray(gate_up[:, f:, :]))
        w.add_tensor(b + "ffn_down_exps.weight", sd[p + "mlp.experts.down_proj"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_reference(out, name, model, ids, extra=None):
    ref64 = logits_for(model, ids, torch.float64)
    ref32 = logits_for(model, ids, torch.float32)
    ref64.tofile(out / f"{name}.logits.f64")
    fp32_error = float(np.max(np.abs(ref32 - ref64)))
    meta = {"tokens": ids, "positions": len(ref64), "vocab": ref64.shape[1], "last_only": False,
            "fp32_max_abs_error": fp32_error, "logits_max_abs": float(np.max(np.abs(ref64))),
            "argmax": [int(i) for i in ref64.argmax(axis=1)], **(extra or {})}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: fp32 error {fp32_error:.3g}, logits up to {meta['logits_max_abs']:.3g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/model"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (cls, make_config) in VARIANTS.items():
        config = make_config()
        rng = np.random.default_rng(len(name))
        ids = [int(i) for i in rng.integers(0, config.vocab_size, TOKENS)]
        seed = sum(map(ord, name))
        while True:
            model = cls(config).to(torch.float32).eval()
            randomize(model, seed)
            margins = []
            logits_for(model, ids, torch.float64, margins)
            if min(margins) >= MIN_MARGIN:
                break
            seed += 1
        folder = args.out / name
        shutil.rmtree(folder, ignore_errors=True)
        model.to(torch.float32).save_pretrained(folder)
        for extra in folder.iterdir():
            if extra.name not in ("config.json", "model.safetensors"):
                extra.unlink()
        write_reference(args.out, name, model, ids, {"hf_dir": name, "seed": seed, "min_routing_margin": min(margins)})
        if name == "tiny_qwen3_moe_norm":
            write_moe_gguf(args.out / f"{name}.gguf", model, config, "qwen3moe")
        if name == "tiny_mixtral":
            write_moe_gguf(args.out / "tiny_mixtral.gguf", model, config, "llama")
            quantized = cls(config).eval()
            quantized.load_state_dict(model.state_dict())
            with torch.no_grad():
                for n, p in quantized.named_parameters():
                    if ".experts." in n:
                        # transformers holds the experts fused (gate_up: E × 2F × D, down: E × D × F);
                        # every row is quantized on its own, groups running along the input.
                        rows = p.detach().numpy().reshape(-1, p.shape[-1])
                        p.copy_(torch.from_numpy(marlin_int4_g32(rows).reshape(p.shape)))
            margins = []
            logits_for(quantized, ids, torch.float64, margins)
            assert min(margins) >= MIN_MARGIN, f"int4 experts: routing margin {min(margins)}"
            write_reference(args.out, "tiny_mixtral_int4", quantized, ids,
                            {"hf_dir": name, "experts": "int4-g32 rtn", "min_routing_margin": min(margins)})


if __name__ == "__main__":
    main()
