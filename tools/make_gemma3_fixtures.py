#!/usr/bin/env python3
"""Reference logits for the Gemma 3 forward-pass parity tests, computed with transformers.

Tiny random Gemma 3 text models (Gemma3ForCausalLM) with every feature the real ones use: sliding
and global layers (the window shorter than the test sequence), their two RoPE thetas, Q/K norms,
norms before and after attention and the MLP, GELU-tanh gating, GQA, head_dim != hidden/heads,
tied embeddings scaled by sqrt(hidden). Each is written as a Hugging Face folder (config.json +
model.safetensors); "tiny_gemma3" also as a GGUF file the way llama.cpp's converter writes Gemma 3
(every norm weight stored as 1 + w, Q/K rows not permuted), so that both loaders are tested.
"tiny_gemma3_scaled" has what GGUF cannot say: query_pre_attn_scalar != head_dim and linear RoPE
scaling on the global layers only.

The logits of every position are computed in float64 (the expected values) and float32 (whose
distance to float64 sets the C++ tests' tolerance), as tools/make_llama_fixtures.py does.

"tiny_gemma3_multimodal" is tiny_gemma3's language model inside a Gemma3ForConditionalGeneration
(the form of Gemma 3 4B/12B/27B checkpoints: text_config, language_model.model.* weights, a vision
tower marlin does not read); for text it computes tiny_gemma3's logits, which the tests reuse.

With --real MODEL.gguf it also writes gemma3_270m_greedy.json: the greedy continuations that
transformers (float32) computes for a few prompts from the GGUF's weights dequantized (norms back
to w), the prompts tokenized by llama.cpp (llama-cpp-python), the chat prompt in Gemma's turn format.

Needs torch, transformers 5, numpy and gguf (and llama-cpp-python for --real). Run from the
repository root:
  python3 tools/make_gemma3_fixtures.py --out tests/fixtures/model [--real models/gemma-3-270m-q4_k_m.gguf]
"""
import argparse
import json
import pathlib
import shutil

import gguf
import numpy as np
import torch
from transformers import Gemma3Config, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, Gemma3TextConfig

VARIANTS = {
    # 5 layers, every 3rd global: sliding, sliding, global, sliding, sliding.
    "tiny_gemma3": dict(layers=5, pattern=3, query_pre_attn_scalar=64, global_rope=None, gguf=True, seed=3),
    "tiny_gemma3_scaled": dict(layers=3, pattern=2, query_pre_attn_scalar=40,
                               global_rope={"rope_type": "linear", "factor": 2.0}, gguf=False, seed=5),
}
VOCAB, HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM = 128, 32, 32, 2, 1, 64
WINDOW, TOKENS = 16, 72
GLOBAL_THETA, LOCAL_THETA = 1_000_000.0, 10_000.0


def make_model(v: dict) -> Gemma3ForCausalLM:
    full = {"rope_type": "default", "rope_theta": GLOBAL_THETA}
    if v["global_rope"]:
        full.update(v["global_rope"])
    config = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=v["layers"],
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
        max_position_embeddings=256, rms_norm_eps=1e-6, sliding_window=WINDOW,
        sliding_window_pattern=v["pattern"], query_pre_attn_scalar=v["query_pre_attn_scalar"],
        rope_parameters={"full_attention": full,
                         "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_THETA}},
        tie_word_embeddings=True, attn_implementation="eager", pad_token_id=0, bos_token_id=2, eos_token_id=1)
    assert "full_attention" in config.layer_types and "sliding_attention" in config.layer_types
    torch.manual_seed(v["seed"])
    model = Gemma3ForCausalLM(config).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Norm weights w are applied as 1 + w; random ones make every norm matter.
            p.copy_(0.3 * torch.randn_like(p) if "norm" in name else 0.08 * torch.randn_like(p))
    return model


def logits_for(model, ids: list[int], dtype: torch.dtype) -> np.ndarray:
    m = model.to(dtype)
    with torch.no_grad():
        out = m(torch.tensor([ids], dtype=torch.long)).logits[0]
    return out.to(torch.float64).numpy()


def write_hf(model, folder: pathlib.Path):
    if folder.exists():
        shutil.rmtree(folder)
    model.to(torch.float32).save_pretrained(folder, safe_serialization=True)
    for extra in folder.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()


def write_gguf(model, v: dict, path: pathlib.Path):
    config = model.config
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_name(path.stem)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_rope_freq_base(GLOBAL_THETA)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_sliding_window(WINDOW)
    w.add_sliding_window_pattern(v["pattern"])
    sd = {k: t.detach().to(torch.float32).numpy() for k, t in model.state_dict().items()}

    def norm(name):  # llama.cpp's converter stores Gemma norm weights as 1 + w
        return sd[name] + np.float32(1.0)

    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", norm("model.norm.weight"))
    for i in range(config.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        for hf, gg in [("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm"),
                       ("pre_feedforward_layernorm", "ffn_norm"), ("post_feedforward_layernorm", "post_ffw_norm"),
                       ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm")]:
            w.add_tensor(b + gg + ".weight", norm(p + hf + ".weight"))
        for hf, gg in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                       ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                       ("mlp.down_proj", "ffn_down")]:
            w.add_tensor(b + gg + ".weight", sd[p + hf + ".weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_multimodal(text_model, ids: list[int], folder: pathlib.Path):
    vision = dict(hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = Gemma3Config(text_config=text_model.config.to_dict(), vision_config=vision, mm_tokens_per_image=4)
    torch.manual_seed(7)
    model = Gemma3ForConditionalGeneration(config).to(torch.float32).eval()
    missing = model.model.language_model.load_state_dict(
        {k.removeprefix("model."): v for k, v in text_model.state_dict().items() if k.startswith("model.")})
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0].to(torch.float64).numpy()
    theirs = logits_for(text_model, ids, torch.float32)
    assert np.max(np.abs(ours - theirs)) < 1e-5, np.max(np.abs(ours - theirs))
    write_hf(model, folder)


REAL_PROMPTS = [
    # (text, chat-formatted?)
    ("What is the capital of France?", True),
    ("The capital of France is", False),
    ("def fibonacci(n):", False),
]
REAL_TOKENS = 12
GGUF_TO_HF = {"input_layernorm": "attn_norm", "post_attention_layernorm": "post_attention_norm",
              "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
              "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "self_attn.q_proj": "attn_q",
              "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def real(model_path: pathlib.Path, out: pathlib.Path):
    from llama_cpp import Llama
    reader = gguf.GGUFReader(str(model_path))

    def meta(key):
        f = reader.fields[key]
        return f.parts[f.data[0]][0]

    t = {}
    for x in reader.tensors:
        values = gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32)
        t[x.name] = values.reshape([int(d) for d in reversed(x.shape)]) if len(x.shape) > 1 else values
    layers = int(meta("gemma3.block_count"))
    theta = float(meta("gemma3.rope.freq_base"))
    config = Gemma3TextConfig(
        vocab_size=t["token_embd.weight"].shape[0], hidden_size=int(meta("gemma3.embedding_length")),
        intermediate_size=int(meta("gemma3.feed_forward_length")), num_hidden_layers=layers,
        num_attention_heads=int(meta("gemma3.attention.head_count")),
        num_key_value_heads=int(meta("gemma3.attention.head_count_kv")),
        head_dim=int(meta("gemma3.attention.key_length")), max_position_embeddings=int(meta("gemma3.context_length")),
        rms_norm_eps=float(meta("gemma3.attention.layer_norm_rms_epsilon")),
        sliding_window=int(meta("gemma3.attention.sliding_window")), sliding_window_pattern=6,
        query_pre_attn_scalar=int(meta("gemma3.attention.key_length")),
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": theta},
                         "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_THETA}},
        tie_word_embeddings=True, attn_implementation="eager")
    model = Gemma3ForCausalLM(config).eval()
    sd = {"model.embed_tokens.weight": t["token_embd.weight"], "model.norm.weight": t["output_norm.weight"] - 1}
    for i in range(layers):
        for hf, gg in GGUF_TO_HF.items():
            v = t[f"blk.{i}.{gg}.weight"]
            sd[f"model.layers.{i}.{hf}.weight"] = v - 1 if "norm" in hf else v  # stored as 1 + w
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    model.tie_weights()

    llama = Llama(model_path=str(model_path), n_ctx=256, vocab_only=True, verbose=False)
    cases = []
    for text, chat in REAL_PROMPTS:
        rendered = f"<bos><start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n" if chat else text
        ids = llama.tokenize(rendered.encode(), add_bos=not chat, special=True)
        with torch.no_grad():
            generated = model.generate(torch.tensor([ids]), max_new_tokens=REAL_TOKENS, do_sample=False,
                                       min_new_tokens=REAL_TOKENS)[0][len(ids):].tolist()
            logits = model(torch.tensor([ids + generated])).logits[0].to(torch.float64)
        # The margin of each greedy choice over the runner-up: small margins may flip under
        # marlin's 8-bit activations.
        top2 = torch.topk(logits[len(ids) - 1:-1], 2).values
        cases.append({"text": text, "chat": chat, "prompt": ids, "greedy": generated,
                      "margins": [round(float(a - b), 4) for a, b in top2.tolist()]})
        print(text, generated, cases[-1]["margins"])
    (out / "gemma3_270m_greedy.json").write_text(json.dumps({"model": model_path.name, "cases": cases}, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/model"))
    parser.add_argument("--real", type=pathlib.Path, help="also write gemma3_270m_greedy.json from this GGUF")
    parser.add_argument("--multimodal-only", action="store_true",
                        help="only write tiny_gemma3_multimodal, from the tiny_gemma3 folder already in --out")
    args = parser.parse_args()
    if args.multimodal_only:
        model = Gemma3ForCausalLM.from_pretrained(args.out / "tiny_gemma3", attn_implementation="eager").eval()
        ids = json.loads((args.out / "tiny_gemma3.json").read_text())["tokens"]
        write_multimodal(model.to(torch.float32), ids, args.out / "tiny_gemma3_multimodal")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.real:
        real(args.real, args.out)
    for name, v in VARIANTS.items():
        model = make_model(v)
        write_hf(model, args.out / name)
        if v["gguf"]:
            write_gguf(model, v, args.out / f"{name}.gguf")
        rng = np.random.default_rng(v["seed"])
        ids = [int(i) for i in rng.integers(0, VOCAB, TOKENS)]
        ref64 = logits_for(model, ids, torch.float64)
        ref32 = logits_for(model, ids, torch.float32)
        ref64.astype(np.float64).tofile(args.out / f"{name}.logits.f64")
        fp32_error = float(np.max(np.abs(ref32 - ref64)))
        meta = {"tokens": ids, "positions": len(ref64), "vocab": VOCAB, "last_only": False,
                "fp32_max_abs_error": fp32_error, "logits_max_abs": float(np.max(np.abs(ref64))),
                "argmax": [int(i) for i in ref64.argmax(axis=1)], "hf_dir": name,
                "gguf": f"{name}.gguf" if v["gguf"] else None, "sliding_window": WINDOW,
                "layer_types": model.config.layer_types}
        (args.out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
        if name == "tiny_gemma3":
            write_multimodal(model.to(torch.float32), ids, args.out / "tiny_gemma3_multimodal")
        print(f"{name}: {len(ids)} tokens, fp32 error {fp32_error:.3g}, max |logit| {meta['logits_max_abs']:.3g}")


if __name__ == "__main__":
    main()
