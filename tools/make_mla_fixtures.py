#!/usr/bin/env python3
"""Reference logits for the multi-head latent attention (MLA) parity tests, computed with transformers.

Three tiny random checkpoints (2 layers: layer 0 a dense MLP, layer 1 a mixture of experts), saved
as Hugging Face directories (config.json + model.safetensors, fp32; transformers' save_pretrained
writes the experts per expert: mlp.experts.E.{gate,up,down}_proj.weight):
  tiny_deepseek_v3   DeepseekV3ForCausalLM, q_lora_rank set (q_a_proj -> q_a_layernorm -> q_b_proj),
                     interleaved RoPE, YaRN with mscale != mscale_all_dim (so both the cos/sin
                     attention factor and the softmax-scale correction mscale(factor, mscale_all_dim)^2
                     matter). MoE: 8 routed experts in 4 groups (2 best groups by the sum of their two
                     best scores), top-3, sigmoid scores with a random e_score_correction_bias for
                     choosing, norm_topk_prob, routed_scaling_factor 2.5, one shared expert.
  tiny_deepseek_v2   DeepseekV2ForCausalLM, q_lora_rank None (plain q_proj), DeepSeek-V2's complex
                     (interleaved) RoPE, default RoPE. MoE: 8 routed experts, top-3,
                     group_limited_greedy (4 groups by their best softmax score, 2 kept; with
                     top_k <= topk_group the limit could never change a choice), no
                     renormalization, routed_scaling_factor 1.5, two shared experts (one MLP of twice
                     the experts' width).
  tiny_glm4_moe_lite Glm4MoeLiteForCausalLM (GLM-4.7-Flash), mlp_layer_types [dense, sparse],
                     rope_interleave False (half-split RoPE), rope_theta 1e6. MoE: 8 routed experts,
                     n_group 1, top-2, sigmoid with a random bias, norm_topk_prob,
                     routed_scaling_factor 1.8, one shared expert.
transformers initializes e_score_correction_bias to zeros; here it is set to random values big
enough to change many choices (the script checks that choosing without the bias, or without the
groups, would route differently). A token whose routing is nearly a tie (group scores or the k-th
and (k+1)-th choice scores within MIN_MARGIN; for DeepSeek-V2's softmax, its logits) could be routed differently by arithmetic that
differs only in rounding; the seed is advanced until every decision has that margin.

The logits of every position of one sequence come in float64 (expected) and float32 (its distance
to float64 sets the C++ tolerance), as in make_llama_fixtures.py. (transformers computes router
scores in fp32 in both runs.)

Needs torch, transformers (5.x), numpy and safetensors. Run from tools/ (it imports
make_llama_fixtures):
  cd tools && python3 make_mla_fixtures.py --out ../tests/fixtures/model
"""
import argparse
import pathlib
import shutil

import numpy as np
import torch
from transformers import (DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM,
                          Glm4MoeLiteConfig, Glm4MoeLiteForCausalLM)

from make_llama_fixtures import write_reference

MIN_MARGIN = 1e-3
TOKENS = 100

COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24,
              max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
              n_routed_experts=8, moe_intermediate_size=32, attn_implementation="eager",
              experts_implementation="eager")


def variants():
    yarn = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.7}
    return {
        "tiny_deepseek_v3": (DeepseekV3ForCausalLM,
                             DeepseekV3Config(**COMMON, q_lora_rank=48, first_k_dense_replace=1,
                                              num_experts_per_tok=3, n_group=4, topk_group=2, norm_topk_prob=True,
                                              routed_scaling_factor=2.5, n_shared_experts=1,
                                              rope_interleave=True, rope_parameters=yarn)),
        "tiny_deepseek_v2": (DeepseekV2ForCausalLM,
                             DeepseekV2Config(**COMMON, q_lora_rank=None, first_k_dense_replace=1,
                                              num_experts_per_tok=3, topk_method="group_limited_greedy",
                                              n_group=4, topk_group=2, routed_scaling_factor=1.5,
                                              n_shared_experts=2,
                                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
        "tiny_glm4_moe_lite": (Glm4MoeLiteForCausalLM,
                               Glm4MoeLiteConfig(**COMMON, q_lora_rank=40, mlp_layer_types=["dense", "sparse"],
                                                 num_experts_per_tok=2, n_group=1, topk_group=1,
                                                 norm_topk_prob=True, routed_scaling_factor=1.8,
                                                 n_shared_experts=1, rope_interleave=False,
                                                 rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    }


def routers(model):
    return [m for n, m in model.named_modules() if n.endswith("mlp.gate")]


def chosen(scores, bias, n_group, topk_group, group_top2, k):
    """Per token: the chosen experts (as a set) and the smallest margin of its decisions, by the
    rule of Backend::moe, in float64."""
    choice = scores + bias
    tokens, experts = choice.shape
    size = experts // n_group
    sets, margin = [], np.inf
    for t in range(tokens):
        allowed = np.arange(experts)
        if n_group > 1:
            groups = np.sort(choice[t].reshape(n_group, size), axis=1)[:, ::-1]
            score = groups[:, :2].sum(axis=1) if group_top2 else groups[:, 0]
            order = np.argsort(-score, kind="stable")
            margin = min(margin, score[order[topk_group - 1]] - score[order[topk_group]])
            allowed = np.concatenate([np.arange(g * size, (g + 1) * size) for g in sorted(order[:topk_group])])
        c = choice[t, allowed]
        order = np.argsort(-c, kind="stable")
        if len(allowed) > k:
            margin = min(margin, c[order[k - 1]] - c[order[k]])
        sets.append(frozenset(allowed[order[:k]].tolist()))
    return sets, margin


def routing_report(model, ids):
    """Runs the model in float64 and returns, over every router call, the smallest decision margin
    and how many token choices change when the bias or the group limit is ignored."""
    sigmoid = not isinstance(model, DeepseekV2ForCausalLM)
    stats = {"margin": np.inf, "decisions": 0, "changed_without_bias": 0, "changed_without_groups": 0}

    def hook(module, args, output):
        logits = output[0].detach().to(torch.float64)
        # Softmax keeps the order of the logits (and of each group's best), so V2's decisions are
        # measured on the logits, whose rounding error is what could flip them.
        scores = (torch.sigmoid(logits) if sigmoid else logits).numpy()
        bias = module.e_score_correction_bias.detach().to(torch.float64).numpy() if sigmoid else 0.0 * scores[0]
        grouped = sigmoid or module.topk_method == "group_limited_greedy"
        n_group, topk_group = (module.num_group, module.topk_group) if grouped else (1, 1)
        k = module.top_k
        sets, margin = chosen(scores, bias, n_group, topk_group, sigmoid, k)
        no_bias, _ = chosen(scores, 0.0 * bias, n_group, topk_group, sigmoid, k)
        no_groups, _ = chosen(scores, bias, 1, 1, sigmoid, k)
        assert [frozenset(s) for s in output[2].tolist()] == sets, "the oracle disagrees with transformers"
        stats["margin"] = min(stats["margin"], margin)
        stats["decisions"] += len(sets)
        stats["changed_without_bias"] += sum(a != b for a, b in zip(sets, no_bias))
        stats["changed_without_groups"] += sum(a != b for a, b in zip(sets, no_groups))

    m = model.to(torch.float64)
    handles = [r.register_forward_hook(hook) for r in routers(m)]
    with torch.no_grad():
        m(torch.tensor([ids], dtype=torch.long))
    for h in handles:
        h.remove()
    return stats


def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():  # random init leaves norms at 1 and the bias at 0; make them informative
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif n.endswith("mlp.gate.weight"):
                p.copy_(0.3 * torch.randn_like(p))  # routers spread their scores
            else:
                p.copy_(0.1 * torch.randn_like(p))
        for r in routers(model):
            if hasattr(r, "e_score_correction_bias"):
                r.e_score_correction_bias.copy_(0.15 * torch.randn_like(r.e_score_correction_bias))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("../tests/fixtures/model"))
    args = ap.parse_args()
    for index, (name, (model_class, config)) in enumerate(variants().items()):
        ids = [int(i) for i in np.random.default_rng(17 + index).integers(0, config.vocab_size, TOKENS)]
        seed = 11 + 100 * index
        while True:
            model = model_class(config).to(torch.float32).eval()
            randomize(model, seed)
            stats = routing_report(model, ids)
            if stats["margin"] >= MIN_MARGIN:
                break
            seed += 1
        sigmoid = model_class is not DeepseekV2ForCausalLM
        # The parity tests must be able to fail: choosing without the bias or the groups differs.
        assert config.n_group == 1 or stats["changed_without_groups"] >= 5, stats
        assert not sigmoid or stats["changed_without_bias"] >= 5, stats
        model = model.to(torch.float32)
        hf_dir = args.out / name
        shutil.rmtree(hf_dir, ignore_errors=True)
        model.save_pretrained(hf_dir, safe_serialization=True)
        for extra in hf_dir.iterdir():
            if extra.name not in ("config.json", "model.safetensors"):
                extra.unlink()
        write_reference(args.out, name, model, ids, last_only=False,
                        extra={"hf_dir": name, "seed": seed, "min_routing_margin": float(stats["margin"]),
                               "routing_decisions": stats["decisions"],
                               "changed_without_bias": stats["changed_without_bias"],
                               "changed_without_groups": stats["changed_without_groups"]})
        print(name, stats)


if __name__ == "__main__":
    main()
