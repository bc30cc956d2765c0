#!/usr/bin/env python3
"""Reference logits for the multi-head latent attention (MLA) parity tests, computed with transformers.

Three tiny random checkpoints with dense MLPs only (2 layers; MoE layers are out of scope here),
saved as Hugging Face directories (config.json + model.safetensors):
  tiny_deepseek_v3   DeepseekV3ForCausalLM, q_lora_rank set (q_a_proj -> q_a_layernorm -> q_b_proj),
                     interleaved RoPE, YaRN with mscale != mscale_all_dim (so both the cos/sin
                     attention factor and the softmax-scale correction mscale(factor, mscale_all_dim)^2
                     matter), first_k_dense_replace = num_hidden_layers.
  tiny_deepseek_v2   DeepseekV2ForCausalLM, q_lora_rank None (plain q_proj), DeepSeek-V2's complex
                     (interleaved) RoPE, default RoPE.
  tiny_glm4_moe_lite Glm4MoeLiteForCausalLM (GLM-4.7-Flash), mlp_layer_types all "dense",
                     rope_interleave False (half-split RoPE), rope_theta 1e6.
The logits of every position of one sequence come in float64 (expected) and float32 (its distance
to float64 sets the C++ tolerance), as in make_llama_fixtures.py.

Needs torch, transformers (5.x), numpy and safetensors. Run from tools/ (it imports
make_llama_fixtures):
  cd tools && python3 make_mla_fixtures.py --out ../tests/fixtures/model
"""
import argparse
import pathlib

import numpy as np
import torch
from transformers import (DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM,
                          Glm4MoeLiteConfig, Glm4MoeLiteForCausalLM)

from make_llama_fixtures import write_reference

COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=4, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=24,
              max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
              attn_implementation="eager")


def variants():
    yarn = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.7}
    return {
        "tiny_deepseek_v3": (DeepseekV3ForCausalLM,
                             DeepseekV3Config(**COMMON, q_lora_rank=48, first_k_dense_replace=2,
                                              n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                              rope_interleave=True, rope_parameters=yarn)),
        "tiny_deepseek_v2": (DeepseekV2ForCausalLM,
                             DeepseekV2Config(**COMMON, q_lora_rank=None, first_k_dense_replace=2,
                                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
        "tiny_glm4_moe_lite": (Glm4MoeLiteForCausalLM,
                               Glm4MoeLiteConfig(**COMMON, q_lora_rank=40, mlp_layer_types=["dense", "dense"],
                                                 rope_interleave=False,
                                                 rope_parameters={"rope_type": "default", "rope_theta": 1e6})),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("../tests/fixtures/model"))
    args = ap.parse_args()
    for seed, (name, (model_class, config)) in enumerate(variants().items()):
        torch.manual_seed(11 + seed)
        model = model_class(config).to(torch.float32).eval()
        with torch.no_grad():  # random init leaves norms at 1; make them informative
            for n, p in model.named_parameters():
                p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in n else 0.1 * torch.randn_like(p))
        assert not any("experts" in n for n, _ in model.named_parameters()), "dense layers only"
        hf_dir = args.out / name
        model.save_pretrained(hf_dir, safe_serialization=True)
        (hf_dir / "generation_config.json").unlink(missing_ok=True)
        ids = [int(i) for i in np.random.default_rng(17 + seed).integers(0, config.vocab_size, 100)]
        write_reference(args.out, name, model, ids, last_only=False, extra={"hf_dir": name})


if __name__ == "__main__":
    main()
