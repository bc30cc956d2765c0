#!/usr/bin/env python3
"""Reference logits for the Qwen3 parity tests, computed with transformers.

A tiny random Qwen3 (per-head q/k RMSNorm, GQA, head_dim 64 = four times hidden_size / heads, a
size the CUDA attention takes; untied lm_head) saved twice: as a Hugging Face directory (config.json + model.safetensors) and as a GGUF
file named as llama.cpp names Qwen3 tensors (Q/K rows in Hugging Face order). The logits of every
position of one sequence come in float64 (expected) and float32 (its distance to float64 sets the
C++ tolerance), as in make_llama_fixtures.py.

Needs torch, transformers, numpy, safetensors and gguf. Run from tools/ (it imports
make_llama_fixtures):
  cd tools && python3 make_qwen3_fixtures.py --out ../tests/fixtures/model
"""
import argparse
import json
import pathlib

import gguf
import numpy as np
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from make_llama_fixtures import write_reference

GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_gguf(path: pathlib.Path, model, config):
    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_name(path.stem)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_rope_freq_base(config.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(config.num_hidden_layers):
        for hf, name in GGUF_LAYER_NAMES.items():
            w.add_tensor(f"blk.{i}.{name}", sd[f"model.layers.{i}.{hf}"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("../tests/fixtures/model"))
    args = ap.parse_args()
    name = "tiny_qwen3"
    torch.manual_seed(3)
    config = Qwen3Config(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=256,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="eager")
    config.rope_parameters = {**config.rope_parameters, "rope_theta": 1000000.0}
    model = Qwen3ForCausalLM(config).to(torch.float32).eval()
    with torch.no_grad():  # random init leaves norms at 1; make them informative
        for n, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in n else 0.08 * torch.randn_like(p))
    hf_dir = args.out / name
    model.save_pretrained(hf_dir, safe_serialization=True)
    for extra in ("generation_config.json",):
        (hf_dir / extra).unlink(missing_ok=True)
    write_gguf(args.out / f"{name}.gguf", model, config)
    ids = [int(i) for i in np.random.default_rng(7).integers(0, config.vocab_size, 100)]
    write_reference(args.out, name, model, ids, last_only=False, extra={"gguf": f"{name}.gguf", "hf_dir": name})
    print(json.dumps(json.loads((hf_dir / "config.json").read_text()), indent=None)[:300])


if __name__ == "__main__":
    main()
