#!/usr/bin/env python3
"""GGUF fixtures of multi-head latent attention (MLA) models as llama.cpp's converter writes them
(architecture "deepseek2" for DeepSeek-V2/V3 and GLM-4.7-Flash), with transformers' logits.

Each tiny random transformers checkpoint is written the way llama.cpp's convert_hf_to_gguf.py
(DeepseekV2Model / Glm4MoeLiteModel) writes the real one: its metadata keys, its tensor names, the
experts of a layer stacked into 3-D tensors, kv_b_proj split per head into attn_k_b (transposed)
and attn_v_b, and no permutation of q/k rows (llama.cpp rotates deepseek2 in adjacent pairs, which
is transformers' rope_interleave; every checkpoint here has it). The HF checkpoints are not kept.

  tiny_mla_v3        DeepseekV3ForCausalLM, dense layers only (first_k_dense_replace = layers),
                     q_lora_rank, YaRN with mscale = mscale_all_dim (cos/sin factor 1, softmax scale
                     times mscale^2: rope.scaling.yarn_log_multiplier), split attn_k_b / attn_v_b.
  tiny_mla_v2_legacy DeepseekV2ForCausalLM-style dense MLA without q_lora_rank, as files written
                     before llama.cpp split kv_b_proj: attn_kv_b, key_length = qk_nope + qk_rope,
                     head_count_kv = heads, no *_mla keys.
  tiny_mla_glm       Glm4MoeLiteForCausalLM, dense layers, F16 matrices (the weights rounded to fp16
                     before the reference runs), tokenizer pre "glm4", one multi-token-prediction
                     block appended (nextn_predict_layers 1: a MoE layer of 4 experts and the nextn
                     tensors, as llama.cpp requires them) that inference ignores.
  tiny_mla_v3_moe    DeepseekV3ForCausalLM, layer 0 dense and layers 1-2 MoE: 8 routed experts in 4
                     groups (2 chosen), 3 per token, sigmoid scores with e_score_correction_bias, 1
                     shared expert, norm_topk_prob, routed_scaling_factor 2.5; F16 experts. Weights are
                     redrawn until every routing decision has a margin of at least MIN_MARGIN.

Each writes <name>.gguf, <name>.json + <name>.logits.f64 (make_llama_fixtures.write_reference:
float64 logits of every position, and the float32 run's distance to them) and <name>.tensors.json:
for every Hugging Face tensor name a loader asks for (per-expert names for the 3-D tensors,
kv_b_proj for the split pair), its shape and a position-weighted checksum of its values.

Needs torch, transformers (5.x), numpy and gguf. Run from tools/ (it imports make_llama_fixtures):
  cd tools && python3 make_mla_gguf_fixtures.py --out ../tests/fixtures/model
"""
import argparse
import json
import pathlib

import gguf
import numpy as np
import torch
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM
from transformers import Glm4MoeLiteConfig, Glm4MoeLiteForCausalLM

from make_llama_fixtures import write_reference

MIN_MARGIN = 1e-3
TOKENS = 100
COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24,
              max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False, rope_interleave=True,
              attn_implementation="eager")


def variants():
    """name -> (model class, config, config.json keys the class drops, writing options)."""
    yarn = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.7, "mscale_all_dim": 0.7}
    moe = dict(COMMON, num_hidden_layers=3, experts_implementation="eager")
    return {
        "tiny_mla_v3": (DeepseekV3ForCausalLM,
                        DeepseekV3Config(**COMMON, q_lora_rank=48, first_k_dense_replace=2, n_routed_experts=4,
                                         num_experts_per_tok=2, moe_intermediate_size=32, n_group=1, topk_group=1,
                                         rope_parameters=yarn),
                        {"scoring_func": "sigmoid"}, dict(split_kv_b=True)),
        "tiny_mla_v2_legacy": (DeepseekV2ForCausalLM,
                               DeepseekV2Config(**COMMON, q_lora_rank=None, first_k_dense_replace=2, num_experts_per_tok=6,
                                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
                               {}, dict(split_kv_b=False)),
        "tiny_mla_glm": (Glm4MoeLiteForCausalLM,
                         Glm4MoeLiteConfig(**COMMON, q_lora_rank=40, mlp_layer_types=["dense", "dense"],
                                           n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
                                           rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
                         {"first_k_dense_replace": 2}, dict(split_kv_b=True, f16=True, nextn=1, pre="glm4")),
        "tiny_mla_v3_moe": (DeepseekV3ForCausalLM,
                            DeepseekV3Config(**moe, q_lora_rank=48, first_k_dense_replace=1, n_routed_experts=8,
                                             num_experts_per_tok=3, moe_intermediate_size=32, n_shared_experts=1,
                                             n_group=4, topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5,
                                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
                            {"scoring_func": "sigmoid"}, dict(split_kv_b=True, f16_experts=True)),
    }


def randomize(model, seed: int, f16: bool, f16_experts: bool):
    """Informative norms (random init leaves them at 1), small weights, a score bias of the size of
    the sigmoid scores' spread; weights stored as F16 are rounded to fp16 here already."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.copy_(1.0 + 0.2 * r if "norm" in n else 0.1 * r)
            if (f16 and p.dim() >= 2 and not n.endswith("mlp.gate.weight")) or (f16_experts and ".experts." in n):
                p.copy_(p.half().float())
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=gen, dtype=torch.float32))


def routing_margins(model, config, ids):
    """The smallest gap, over tokens and MoE layers, at each choice transformers makes: the last
    chosen group against the next, and the last chosen expert against the next allowed one."""
    margins = []

    def hook(module, args, _output):
        h = args[0].reshape(-1, config.hidden_size).to(torch.float64)
        scores = torch.sigmoid(h @ module.weight.to(torch.float64).T)
        choice = scores + module.e_score_correction_bias.to(torch.float64)
        g = config.n_group
        groups = choice.view(-1, g, config.n_routed_experts // g).topk(2, dim=-1)[0].sum(-1)
        ranked = groups.sort(dim=-1, descending=True).values
        margins.append(float((ranked[:, config.topk_group - 1] - ranked[:, config.topk_group]).min()))
        keep = torch.zeros_like(groups).scatter_(1, groups.topk(config.topk_group, dim=-1)[1], 1)
        allowed = choice.masked_fill(keep.repeat_interleave(config.n_routed_experts // g, dim=1) == 0, -1e9)
        top = allowed.sort(dim=-1, descending=True).values
        k = config.num_experts_per_tok
        margins.append(float((top[:, k - 1] - top[:, k]).min()))

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules() if n.endswith("mlp.gate")]
    with torch.no_grad():
        model.to(torch.float64)(torch.tensor([ids]))
    model.to(torch.float32)
    for h in handles:
        h.remove()
    return min(margins)


def hf_tensors(model, config) -> dict:
    """Every tensor under the names the checkpoint's own files use (one per expert), float32."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().to(torch.float32).numpy()
        if k.endswith("mlp.experts.gate_up_proj"):  # experts × [gate; up] × hidden
            f = config.moe_intermediate_size
            for e in range(v.shape[0]):
                out[k.replace("gate_up_proj", f"{e}.gate_proj.weight")] = v[e, :f]
                out[k.replace("gate_up_proj", f"{e}.up_proj.weight")] = v[e, f:]
        elif k.endswith("mlp.experts.down_proj"):
            for e in range(v.shape[0]):
                out[k.replace("down_proj", f"{e}.down_proj.weight")] = v[e]
        else:
            out[k] = v
    return out


LAYER_NAMES = {  # llama.cpp's gguf-py tensor names for deepseek2 (constants.py MODEL_TENSORS)
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_a_proj.weight": "attn_q_a.weight",
    "self_attn.q_a_layernorm.weight": "attn_q_a_norm.weight",
    "self_attn.q_b_proj.weight": "attn_q_b.weight",
    "self_attn.kv_a_proj_with_mqa.weight": "attn_kv_a_mqa.weight",
    "self_attn.kv_a_layernorm.weight": "attn_kv_a_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight",
    "mlp.gate.e_score_correction_bias": "exp_probs_b.bias",
    "mlp.shared_experts.gate_proj.weight": "ffn_gate_shexp.weight",
    "mlp.shared_experts.up_proj.weight": "ffn_up_shexp.weight",
    "mlp.shared_experts.down_proj.weight": "ffn_down_shexp.weight",
}


def write_metadata(w, config, hp: dict, opts: dict, path: pathlib.Path):
    """The keys convert_hf_to_gguf.py's DeepseekV2Model.set_gguf_parameters (and TextModel's) write."""
    split = opts["split_kv_b"]
    rope = config.rope_parameters
    w.add_name(path.stem)
    w.add_block_count(config.num_hidden_layers + opts.get("nextn", 0))
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(1 if split else config.num_key_value_heads)  # the converter's MQA view of MLA
    if rope.get("rope_type") == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
        w.add_rope_scaling_yarn_beta_slow(rope["beta_slow"])
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    n_experts = hp.get("n_routed_experts")
    if n_experts is not None:
        w.add_expert_count(n_experts)
    for key, add in (("num_experts_per_tok", w.add_expert_used_count), ("n_group", w.add_expert_group_count),
                     ("topk_group", w.add_expert_group_used_count)):
        if hp.get(key) is not None:
            add(hp[key])
    if hp.get("scoring_func") == "sigmoid":
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    dense = hp.get("first_k_dense_replace")
    w.add_leading_dense_block_count(dense if dense is not None else (0 if n_experts else config.num_hidden_layers))
    w.add_vocab_size(config.vocab_size)
    if config.q_lora_rank is not None:
        w.add_q_lora_rank(config.q_lora_rank)
    rope_dim, nope, kv_rank = config.qk_rope_head_dim, config.qk_nope_head_dim, config.kv_lora_rank
    if split:
        w.add_kv_lora_rank(kv_rank)
        w.add_key_length(kv_rank + rope_dim)
        w.add_value_length(kv_rank)
        w.add_key_length_mla(nope + rope_dim)
        w.add_value_length_mla(config.v_head_dim)
    else:  # the layout before llama.cpp split kv_b_proj
        w.add_kv_lora_rank(kv_rank)
        w.add_key_length(nope + rope_dim)
        w.add_value_length(config.v_head_dim)
    w.add_expert_feed_forward_length(hp.get("moe_intermediate_size") or config.intermediate_size)
    w.add_expert_shared_count(hp.get("n_shared_experts") or 0)
    if hp.get("routed_scaling_factor") is not None:
        w.add_expert_weights_scale(hp["routed_scaling_factor"])
    if hp.get("norm_topk_prob"):
        w.add_expert_weights_norm(True)
    w.add_rope_dimension_count(rope_dim)
    if rope.get("mscale_all_dim") is not None:
        w.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])
    if opts.get("nextn"):
        w.add_nextn_predict_layers(opts["nextn"])
    if opts.get("pre"):
        w.add_tokenizer_pre(opts["pre"])


def write_gguf(path: pathlib.Path, model, config, hp: dict, opts: dict):
    w = gguf.GGUFWriter(str(path), "deepseek2")
    write_metadata(w, config, hp, opts, path)
    f16 = opts.get("f16", False)

    def add(name, value, matrix_f16=False):
        value = np.ascontiguousarray(value, dtype=np.float32)
        w.add_tensor(name, value.astype(np.float16) if matrix_f16 and value.ndim >= 2 else value)

    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    add("token_embd.weight", sd["model.embed_tokens.weight"], f16)
    add("output_norm.weight", sd["model.norm.weight"])
    add("output.weight", sd["lm_head.weight"], f16)
    heads, nope, v_dim = config.num_attention_heads, config.qk_nope_head_dim, config.v_head_dim
    for i in range(config.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        for hf, name in LAYER_NAMES.items():
            if p + hf in sd:  # the router stays F32, as llama.cpp keeps ffn_gate_inp
                add(b + name, sd[p + hf], f16 and hf != "mlp.gate.weight")
        kv_b = sd[p + "self_attn.kv_b_proj.weight"]
        if opts["split_kv_b"]:
            per_head = kv_b.reshape(heads, nope + v_dim, kv_b.shape[-1])
            add(b + "attn_k_b.weight", per_head[:, :nope].transpose(0, 2, 1), f16)  # heads × rank × nope
            add(b + "attn_v_b.weight", per_head[:, nope:], f16)                     # heads × v × rank
        else:
            add(b + "attn_kv_b.weight", kv_b, f16)
        if p + "mlp.experts.gate_up_proj" in sd:
            gate_up, f = sd[p + "mlp.experts.gate_up_proj"], config.moe_intermediate_size
            half = f16 or opts.get("f16_experts", False)
            add(b + "ffn_gate_exps.weight", gate_up[:, :f], half)
            add(b + "ffn_up_exps.weight", gate_up[:, f:], half)
            add(b + "ffn_down_exps.weight", sd[p + "mlp.experts.down_proj"], half)
    for n in range(opts.get("nextn", 0)):
        write_mtp_block(add, config, config.num_hidden_layers + n, f16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_mtp_block(add, config, index: int, f16: bool):
    """A multi-token-prediction block as GLM's files append it (random values; inference does not
    run it): a whole MoE decoder layer plus the nextn tensors, every one llama.cpp requires."""
    rng = np.random.default_rng(5 + index)
    d, e, f = config.hidden_size, config.n_routed_experts, config.moe_intermediate_size
    heads, rank, rope = config.num_attention_heads, config.kv_lora_rank, config.qk_rope_head_dim
    nope, v_dim, q_rank = config.qk_nope_head_dim, config.v_head_dim, config.q_lora_rank
    shapes = {  # numpy shapes (rows, cols): GGUF's reversed
        "attn_norm.weight": (d,), "ffn_norm.weight": (d,), "attn_q_a_norm.weight": (q_rank,),
        "attn_kv_a_norm.weight": (rank,), "attn_q_a.weight": (q_rank, d), "attn_q_b.weight": (heads * (nope + rope), q_rank),
        "attn_kv_a_mqa.weight": (rank + rope, d), "attn_k_b.weight": (heads, rank, nope),
        "attn_v_b.weight": (heads, v_dim, rank), "attn_output.weight": (d, heads * v_dim),
        "ffn_gate_inp.weight": (e, d), "exp_probs_b.bias": (e,), "ffn_gate_exps.weight": (e, f, d),
        "ffn_up_exps.weight": (e, f, d), "ffn_down_exps.weight": (e, d, f), "ffn_gate_shexp.weight": (f, d),
        "ffn_up_shexp.weight": (f, d), "ffn_down_shexp.weight": (d, f), "nextn.eh_proj.weight": (d, 2 * d),
        "nextn.enorm.weight": (d,), "nextn.hnorm.weight": (d,), "nextn.shared_head_norm.weight": (d,),
    }
    for name, shape in shapes.items():
        values = 1 + 0.1 * rng.standard_normal(shape) if len(shape) == 1 else 0.1 * rng.standard_normal(shape)
        add(f"blk.{index}.{name}", values, f16 and name != "ffn_gate_inp.weight")


def checksum(values: np.ndarray) -> float:
    """Position-weighted sum in float64 (a transposed or shifted layout changes it)."""
    flat = values.astype(np.float64).reshape(-1)
    return float(np.dot(flat, 1.0 + np.arange(flat.size) % 13))


def write_tensor_list(path: pathlib.Path, tensors: dict):
    entries = []
    for name, v in tensors.items():
        rows, cols = (1, v.shape[0]) if v.ndim == 1 else v.shape
        entries.append({"name": name, "rows": int(rows), "cols": int(cols), "checksum": checksum(v),
                        "first": [float(x) for x in v.reshape(-1)[:4]]})
    path.write_text(json.dumps({"tensors": entries}, indent=0) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("../tests/fixtures/model"))
    args = ap.parse_args()
    for index, (name, (model_class, config, extra_hp, opts)) in enumerate(variants().items()):
        hp = {**config.to_dict(), **extra_hp}
        ids = [int(i) for i in np.random.default_rng(23 + index).integers(0, config.vocab_size, TOKENS)]
        seed, extra = 31 + 100 * index, {"gguf": f"{name}.gguf"}
        while True:
            model = model_class(config).to(torch.float32).eval()
            randomize(model, seed, opts.get("f16", False), opts.get("f16_experts", False))
            if not hp.get("n_routed_experts") or hp["first_k_dense_replace"] >= config.num_hidden_layers:
                break
            margin = routing_margins(model, config, ids)
            if margin >= MIN_MARGIN:
                extra.update(seed=seed, min_routing_margin=margin)
                break
            seed += 1
        write_gguf(args.out / f"{name}.gguf", model, config, hp, opts)
        write_tensor_list(args.out / f"{name}.tensors.json", hf_tensors(model, config))
        write_reference(args.out, name, model, ids, last_only=False, extra=extra)


if __name__ == "__main__":
    main()
