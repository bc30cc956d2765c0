#!/usr/bin/env python3
"""Reference logits for the Llama forward-pass parity tests, computed with transformers.

  tiny    tiny random Llama checkpoints (standard RoPE, Llama-3 frequency factors, YaRN) written
          as GGUF files, with the logits transformers computes for every position of a sequence.
  smollm  the default model (SmolLM2-135M-Instruct Q4_1): its weights dequantized to fp32, loaded
          into transformers' LlamaForCausalLM, and the last-token logits for a few prompts.

Each reference is computed twice: in float64 (the expected values) and in float32 (whose distance
to float64 measures what fp32 arithmetic alone costs; the C++ tests derive their tolerances from it).
For the default model, a run that feeds every linear layer activations quantized to 8 bits exactly
as marlin's fast CPU kernels do gives "actq_kl": the KL divergence that quantizing activations alone
costs, against which the fast kernels are measured.

Needs torch, transformers, numpy and gguf. Run from the repository root:
  python3 tools/make_llama_fixtures.py tiny --out tests/fixtures/model
  python3 tools/make_llama_fixtures.py smollm --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --out tests/fixtures/model
"""
import argparse
import json
import pathlib

import gguf
import jinja2.sandbox
import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM

# The golden prompts for the default model: (text, rendered with the chat template?).
SMOLLM_PROMPTS = [
    ("What is the capital of France?", True),
    ("The quick brown fox jumps over the lazy dog. In 2024, researchers found that", False),
    ("def fibonacci(n):\n    if n < 2:\n        return n\n    return", False),
]


def permute_for_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorders Q/K rows so that RoPE pairs become adjacent, the layout GGUF Llama files use."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_from_gguf(w: np.ndarray, n_head: int) -> np.ndarray:
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_config(**overrides) -> LlamaConfig:
    rope = overrides.pop("rope", None)
    config = LlamaConfig(attn_implementation="eager", **overrides)
    if rope is not None:
        # transformers 5 keeps RoPE settings in rope_parameters; 4.x in rope_scaling.
        if hasattr(config, "rope_parameters") and isinstance(getattr(config, "rope_parameters"), dict):
            config.rope_parameters = {**config.rope_parameters, **rope}
        else:
            config.rope_scaling = rope
    return config


def logits_for(model: LlamaForCausalLM, ids: list[int], dtype: torch.dtype) -> np.ndarray:
    m = model.to(dtype)
    with torch.no_grad():
        out = m(torch.tensor([ids], dtype=torch.long)).logits[0]
    return out.to(torch.float64).numpy()


def quantize_activations_like_marlin(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit activation quantization of marlin's CPU kernels, in fp32 as they compute it:
    per 32 values along K, d = amax/127, q = round-half-even(x · (127/amax)), value q·d."""
    x32 = x.to(torch.float32)
    blocks = x32.reshape(*x32.shape[:-1], -1, 32)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    d = amax / 127.0
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    q = torch.round(blocks * inv)
    return (q.to(x.dtype) * d.to(x.dtype)).reshape(x.shape)


class ActivationQuantization:
    """Feeds every linear layer 8-bit-quantized activations while active."""

    def __init__(self, model):
        self.model = model
        self.handles = []

    def __enter__(self):
        for module in self.model.modules():
            if isinstance(module, torch.nn.Linear):
                self.handles.append(module.register_forward_pre_hook(
                    lambda _m, args: (quantize_activations_like_marlin(args[0]),)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """KL(P || Q) in nats, where P and Q are the softmax distributions of the logits."""
    lp = p_logits - np.logaddexp.reduce(p_logits)
    lq = q_logits - np.logaddexp.reduce(q_logits)
    return float(np.sum(np.exp(lp) * (lp - lq)))


def write_reference(out: pathlib.Path, name: str, model, ids: list[int], last_only: bool, extra: dict,
                    quantized_activations: bool = False):
    ref64 = logits_for(model, ids, torch.float64)
    ref32 = logits_for(model, ids, torch.float32)
    if quantized_activations:
        # What 8-bit activations alone cost, measured on the reference itself.
        with ActivationQuantization(model):
            actq = logits_for(model, ids, torch.float64)[-1]
        extra = {**extra, "actq_kl": kl_divergence(ref64[-1], actq), "actq_argmax": int(actq.argmax())}
    if last_only:
        ref64, ref32 = ref64[-1:], ref32[-1:]
    ref64.astype(np.float64).tofile(out / f"{name}.logits.f64")
    fp32_error = float(np.max(np.abs(ref32 - ref64)))
    meta = {"tokens": ids, "positions": len(ref64), "vocab": ref64.shape[1], "last_only": last_only,
            "fp32_max_abs_error": fp32_error, "logits_max_abs": float(np.max(np.abs(ref64))),
            "argmax": [int(i) for i in ref64.argmax(axis=1)], **extra}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(ids)} tokens, fp32 error {fp32_error:.3g}, {extra.get('actq_kl', '')}")


def tiny(out: pathlib.Path):
    variants = {
        "tiny_llama": dict(rope=None, tie=False),
        "tiny_llama3_rope": dict(rope={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                                 tie=True),
        "tiny_yarn": dict(rope={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
                          tie=False),
    }
    for name, v in variants.items():
        torch.manual_seed(hash(name) % 1000)
        config = make_config(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=v["tie"],
                             rope=v["rope"])
        model = LlamaForCausalLM(config).to(torch.float32).eval()
        # Random init leaves norms at 1; make them informative.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.copy_(0.08 * torch.randn_like(p))
        write_tiny_gguf(out / f"{name}.gguf", model, config, v["rope"])
        rng = np.random.default_rng(len(name))
        ids = [int(i) for i in rng.integers(0, config.vocab_size, 100)]
        write_reference(out, name, model, ids, last_only=False, extra={"gguf": f"{name}.gguf"})


def write_tiny_gguf(path: pathlib.Path, model, config, rope):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(path.stem)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    head_dim = config.hidden_size // config.num_attention_heads
    w.add_rope_dimension_count(head_dim)
    if rope and rope["rope_type"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    sd = {k: v.detach().to(torch.float32).numpy() for k, v in model.state_dict().items()}
    if rope and rope["rope_type"] == "llama3":
        # GGUF stores Llama-3 scaling as per-frequency divisors of the unscaled frequencies.
        base = 1.0 / (10000.0 ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
        scaled = model.model.rotary_emb.inv_freq.detach().to(torch.float64).numpy()
        w.add_tensor("rope_freqs.weight", (base / scaled).astype(np.float32))
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not config.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(b + "attn_q.weight", permute_for_gguf(sd[p + "self_attn.q_proj.weight"], config.num_attention_heads))
        w.add_tensor(b + "attn_k.weight", permute_for_gguf(sd[p + "self_attn.k_proj.weight"], config.num_key_value_heads))
        w.add_tensor(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def smollm_tokenizer(reader) -> Tokenizer:
    """SmolLM2's tokenizer as its published tokenizer.json configures it, from the GGUF's vocabulary."""
    tokens = gguf_strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in gguf_strings(reader, "tokenizer.ggml.merges")]
    f = reader.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3])
    return tok


def render_chat(template: str, user_text: str) -> str:
    """Renders as transformers' apply_chat_template does (sandboxed jinja2, trim/lstrip blocks)."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=[{"role": "user", "content": user_text}],
                                            add_generation_prompt=True)


def smollm(model_path: pathlib.Path, out: pathlib.Path):
    reader = gguf.GGUFReader(str(model_path))

    def meta(key):
        f = reader.fields[key]
        return f.parts[f.data[0]][0]

    config = make_config(vocab_size=int(reader.tensors[0].shape[1]) if reader.tensors[0].name == "token_embd.weight" else 49152,
                         hidden_size=int(meta("llama.embedding_length")),
                         intermediate_size=int(meta("llama.feed_forward_length")),
                         num_hidden_layers=int(meta("llama.block_count")),
                         num_attention_heads=int(meta("llama.attention.head_count")),
                         num_key_value_heads=int(meta("llama.attention.head_count_kv")),
                         max_position_embeddings=int(meta("llama.context_length")),
                         rms_norm_eps=float(meta("llama.attention.layer_norm_rms_epsilon")),
                         rope_theta=float(meta("llama.rope.freq_base")), tie_word_embeddings=True)
    if hasattr(config, "rope_parameters") and isinstance(config.rope_parameters, dict):
        config.rope_parameters["rope_theta"] = float(meta("llama.rope.freq_base"))
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = values.reshape([int(d) for d in reversed(t.shape)]) if values.ndim > 1 else values
    H, KV = config.num_attention_heads, config.num_key_value_heads
    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"], "model.norm.weight": tensors["output_norm.weight"]}
    for i in range(config.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        sd[p + "input_layernorm.weight"] = tensors[b + "attn_norm.weight"]
        sd[p + "post_attention_layernorm.weight"] = tensors[b + "ffn_norm.weight"]
        sd[p + "self_attn.q_proj.weight"] = unpermute_from_gguf(tensors[b + "attn_q.weight"], H)
        sd[p + "self_attn.k_proj.weight"] = unpermute_from_gguf(tensors[b + "attn_k.weight"], KV)
        sd[p + "self_attn.v_proj.weight"] = tensors[b + "attn_v.weight"]
        sd[p + "self_attn.o_proj.weight"] = tensors[b + "attn_output.weight"]
        sd[p + "mlp.gate_proj.weight"] = tensors[b + "ffn_gate.weight"]
        sd[p + "mlp.up_proj.weight"] = tensors[b + "ffn_up.weight"]
        sd[p + "mlp.down_proj.weight"] = tensors[b + "ffn_down.weight"]
    model = LlamaForCausalLM(config).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                                strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    model.tie_weights()
    tokenizer = smollm_tokenizer(reader)
    template = gguf_strings(reader, "tokenizer.chat_template")[0]
    for i, (text, chat) in enumerate(SMOLLM_PROMPTS):
        prompt = render_chat(template, text) if chat else text
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        write_reference(out, f"smollm_prompt{i}", model, ids, last_only=True, extra={"text": prompt},
                        quantized_activations=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["tiny", "smollm"])
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/model"))
    ap.add_argument("--model", type=pathlib.Path, default=pathlib.Path("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.what == "tiny":
        tiny(args.out)
    else:
        smollm(args.model, args.out)


if __name__ == "__main__":
    main()
