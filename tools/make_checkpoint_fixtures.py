#!/usr/bin/env python3
"""Fixtures for the Hugging Face config/source tests and the GPTQ/AWQ importers.

  configs  tests/fixtures/formats/hf/configs.json: config.json texts (as transformers writes them,
           plus hand-written legacy ones) with what transformers derives from each: head_dim,
           heads, the RoPE inverse frequencies and attention scaling its rotary embedding uses.
  tiny     tests/fixtures/formats/hf/tiny_llama/: a small random Llama checkpoint in two shards
           with an index, mixed f32/f16/bf16 tensors, a byte-level BPE tokenizer.json trained here,
           tokenizer_config.json with a chat template, and expected.json (tokens of a few strings
           from HF tokenizers, each tensor's dtype/shape/first bytes).
  quant    tests/fixtures/formats/{gptq,awq}/<variant>/: tiny checkpoints laid out as AutoGPTQ /
           GPTQModel / AutoAWQ publish them (random codes, zeros, scales, and g_idx for desc_act),
           and expected.safetensors: every quantized linear dequantized to fp32 [out, in] by the
           published formula w[n,k] = scale[g(k), n] * (q[k,n] - z[g(k), n]) in numpy.

Needs numpy, safetensors, tokenizers, transformers and torch (configs only). From the repository root:
  python3 tools/make_checkpoint_fixtures.py configs tiny quant
"""
import argparse
import json
import pathlib

import numpy as np
from safetensors import TensorSpec, serialize_file
from safetensors.numpy import save_file

OUT = pathlib.Path("tests/fixtures/formats")

# --- configs ---------------------------------------------------------------------------------


def config_cases():
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    small = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=128)
    llama31 = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                   num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5)
    made = {
        "llama_default": LlamaConfig(**small, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
        "llama31_llama3": LlamaConfig(**llama31, rope_parameters={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_theta": 500000.0}),
        "llama_linear": LlamaConfig(**small, rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}),
        "llama_head_dim": LlamaConfig(**{**small, "head_dim": 32}),
        "qwen2_yarn": Qwen2Config(**{**small, "max_position_embeddings": 131072}, rope_parameters={
            "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768, "rope_theta": 1000000.0}),
        "qwen2_sliding": Qwen2Config(**small, use_sliding_window=True, sliding_window=64, max_position_embeddings=512),
        "llama_yarn_mscale": LlamaConfig(**{**small, "max_position_embeddings": 4096}, rope_parameters={
            "rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 16,
            "beta_slow": 2, "mscale": 0.707, "mscale_all_dim": 1.0, "rope_theta": 10000.0}),
        "mistral_v01": MistralConfig(**{**small, "max_position_embeddings": 32768}, sliding_window=4096),
        "mistral_no_window": MistralConfig(**small, sliding_window=None),
    }
    cases = {name: json.loads(cfg.to_json_string()) for name, cfg in made.items()}
    # Hand-written configs in older styles, read by transformers' from_dict.
    cases["legacy_linear_partial"] = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **small,
                                      "rope_theta": 1000.0, "rope_scaling": {"type": "linear", "factor": 2.0},
                                      "partial_rotary_factor": 0.5}
    cases["legacy_llama1"] = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
                              "num_hidden_layers": 1, "num_attention_heads": 8, "vocab_size": 32000,
                              "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
    cases["yarn_attention_factor"] = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **small,
                                      "max_position_embeddings": 1024, "rope_theta": 10000.0,
                                      "rope_scaling": {"type": "yarn", "factor": 2.0, "attention_factor": 1.25,
                                                       "original_max_position_embeddings": 512}}
    return cases


def derived(config_json: dict) -> dict:
    import torch
    from transformers import CONFIG_MAPPING
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
    from transformers.models.mistral.modeling_mistral import MistralRotaryEmbedding
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

    cfg = CONFIG_MAPPING[config_json.get("model_type", "llama")].from_dict(dict(config_json))
    rotary = {"llama": LlamaRotaryEmbedding, "mistral": MistralRotaryEmbedding, "qwen2": Qwen2RotaryEmbedding}
    emb = rotary[cfg.model_type](config=cfg)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    window = getattr(cfg, "sliding_window", None)
    context = cfg.max_position_embeddings if not window else min(window, cfg.max_position_embeddings)
    return {"family": "qwen2" if cfg.model_type == "qwen2" else "llama", "n_layers": cfg.num_hidden_layers,
            "d_model": cfg.hidden_size, "d_ffn": cfg.intermediate_size, "n_heads": cfg.num_attention_heads,
            "n_kv_heads": cfg.num_key_value_heads, "head_dim": head_dim, "vocab_size": cfg.vocab_size,
            "context_length": context, "rms_eps": cfg.rms_norm_eps,
            "inv_freq": [float(x) for x in emb.inv_freq.to(torch.float32)],
            "attention_scaling": float(emb.attention_scaling)}


def configs(out: pathlib.Path):
    out.mkdir(parents=True, exist_ok=True)
    cases = [{"name": name, "config": cfg, "expected": derived(cfg)} for name, cfg in config_cases().items()]
    (out / "configs.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"configs: {len(cases)} cases")


# --- tiny HF checkpoint ----------------------------------------------------------------------

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TOKENIZER_PROBES = ["Hello world", "The quick brown fox, 2024!", "<|im_start|>user\nhi<|im_end|>", "ünïcode ✓ 日本"]


def bf16_bytes(values: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even fp32 -> bf16, as uint16."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = ["The quick brown fox jumps over the lazy dog.", "Hello world, hello marlin.",
              "Quantized weights run fast.", "user assistant system"] * 20
    tok.train_from_iterator(corpus, trainer)
    return tok


def tiny(out: pathlib.Path):
    from transformers import LlamaConfig
    folder = out / "tiny_llama"
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(300)
    vocab = tok.get_vocab_size()
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=128, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    cfg.architectures = ["LlamaForCausalLM"]
    (folder / "config.json").write_text(cfg.to_json_string())
    rng = np.random.default_rng(2024)
    h, f, kv = 32, 64, 2 * 8
    shapes = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,), "lm_head.weight": (vocab, h)}
    for i in range(2):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
                       p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
                       p + "mlp.down_proj.weight": (h, f)})
    # Norms in f32, layer 0 in bf16, everything else in f16.
    arrays, expected_tensors = {}, {}
    for name, shape in shapes.items():
        values = rng.standard_normal(shape).astype(np.float32) * 0.1
        if "norm" in name:
            arrays[name], dtype = values, "F32"
        elif "layers.0." in name:
            arrays[name], dtype = bf16_bytes(values), "BF16"
        else:
            arrays[name], dtype = values.astype(np.float16), "F16"
        expected_tensors[name] = {"dtype": dtype, "shape": list(shape), "hex16": arrays[name].tobytes()[:16].hex()}
    names = list(shapes)
    weight_map = {}
    for i, part in enumerate([names[: len(names) // 2], names[len(names) // 2:]]):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        keep, specs = [], {}
        for name in part:
            a = np.ascontiguousarray(arrays[name])
            keep.append(a)
            dt = "bfloat16" if expected_tensors[name]["dtype"] == "BF16" else a.dtype.name
            specs[name] = TensorSpec(dtype=dt, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
            weight_map[name] = shard
        serialize_file(specs, str(folder / shard), metadata={"format": "pt"})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": sum(a.nbytes for a in arrays.values())}, "weight_map": weight_map},
                   indent=2))
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "add_eos_token": False, "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>",
        "chat_template": CHAT_TEMPLATE, "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast"},
        indent=2))
    expected = {"tensors": expected_tensors, "chat_template": CHAT_TEMPLATE,
                "tokens": {text: tok.encode(text, add_special_tokens=False).ids for text in TOKENIZER_PROBES}}
    (folder / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"tiny: {len(shapes)} tensors, vocabulary {vocab}")


# --- GPTQ / AWQ ------------------------------------------------------------------------------

QUANT_CONFIG = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=64, max_position_embeddings=256)
LINEARS = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
           "self_attn.o_proj": (64, 64), "mlp.gate_proj": (96, 64), "mlp.up_proj": (96, 64),
           "mlp.down_proj": (64, 96)}  # name: (N = out features, K = in features)


def pack_along_rows(q: np.ndarray, bits: int) -> np.ndarray:
    """GPTQ qweight packing: the values of each column, in order along axis 0, form one
    little-endian bit stream cut into int32 words (for 3 bits a value may straddle two words)."""
    rows, cols = q.shape
    assert rows * bits % 32 == 0
    out = np.zeros((rows * bits // 32, cols), dtype=np.uint64)
    for k in range(rows):
        bit = k * bits
        word, shift = divmod(bit, 32)
        v = q[k].astype(np.uint64)
        out[word] |= (v << np.uint64(shift)) & np.uint64(0xFFFFFFFF)
        if shift + bits > 32:
            out[word + 1] |= v >> np.uint64(32 - shift)
    return out.astype(np.uint32).view(np.int32)


def pack_along_cols(q: np.ndarray, bits: int) -> np.ndarray:
    """GPTQ qzeros packing: the same stream along axis 1."""
    return np.ascontiguousarray(pack_along_rows(np.ascontiguousarray(q.T), bits).T)


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def awq_pack(q: np.ndarray) -> np.ndarray:
    """AutoAWQ GEMM packing: 8 columns per int32, nibble i holding column 8c + AWQ_ORDER[i]."""
    rows, cols = q.shape
    out = np.zeros((rows, cols // 8), dtype=np.uint32)
    for c in range(cols // 8):
        for i in range(8):
            out[:, c] |= q[:, c * 8 + AWQ_ORDER[i]].astype(np.uint32) << np.uint32(4 * i)
    return out.view(np.int32)


def quantized_linear(rng, kind: str, bits: int, group: int, desc_act: bool, sym: bool, v1: bool, n: int, k: int):
    """Random codes and parameters of one linear, its checkpoint tensors, and its fp32 weights."""
    gs = k if group == -1 else group
    groups = -(-k // gs)  # the last group may be partial
    q = rng.integers(0, 1 << bits, (k, n), dtype=np.int64)
    scales = rng.uniform(0.002, 0.05, (groups, n)).astype(np.float16)
    if sym:
        z = np.full((groups, n), 1 << (bits - 1), dtype=np.int64)
    else:
        # v1 stores z - 1; a stored 2^bits - 1 thus means z = 2^bits (AutoGPTQ's historical quirk).
        top = (1 << bits) - 1 if bits < 8 else (1 << bits) - 2
        z = rng.integers(0, top + 1, (groups, n), dtype=np.int64) + (1 if v1 else 0)
    if desc_act:
        order = rng.permutation(k)  # input features in the order GPTQ quantized them
        g_idx = np.empty(k, dtype=np.int32)
        g_idx[order] = np.arange(k) // gs
    else:
        g_idx = (np.arange(k) // gs).astype(np.int32)
    # The published formula, per element, in fp32.
    w = scales[g_idx].astype(np.float32) * (q - z[g_idx]).astype(np.float32)  # [K, N]
    stored_z = z - 1 if (v1 and kind == "gptq") else z
    if kind == "gptq":
        tensors = {"qweight": pack_along_rows(q, bits), "qzeros": pack_along_cols(stored_z & ((1 << bits) - 1), bits),
                   "scales": scales, "g_idx": g_idx}
    else:
        tensors = {"qweight": awq_pack(q), "qzeros": awq_pack(z), "scales": scales}
    return tensors, np.ascontiguousarray(w.T)


QUANT_VARIANTS = {
    # name: (kind, bits, group, desc_act, sym, v1 zeros, where the config lives)
    "gptq/int4_act_asym_v1": ("gptq", 4, 32, True, False, True, "quantize_config.json"),
    "gptq/int4_sym_v2": ("gptq", 4, 64, False, True, False, "config.json"),
    "gptq/int8_asym_v1": ("gptq", 8, 32, False, False, True, "quantize_config.json"),
    "gptq/int3_act_sym": ("gptq", 3, 32, True, True, True, "quantize_config.json"),
    "gptq/int2_pc_asym_v2": ("gptq", 2, -1, False, False, False, "config.json"),
    "awq/int4_gemm": ("awq", 4, 32, False, False, False, "config.json"),
}


def quant(out: pathlib.Path):
    from transformers import LlamaConfig
    for name, (kind, bits, group, desc_act, sym, v1, config_place) in QUANT_VARIANTS.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(sum(map(ord, name)))
        cfg = json.loads(LlamaConfig(**QUANT_CONFIG).to_json_string())
        cfg["architectures"] = ["LlamaForCausalLM"]
        if kind == "gptq":
            qcfg = {"bits": bits, "group_size": group, "desc_act": desc_act, "sym": sym, "damp_percent": 0.01,
                    "static_groups": False, "true_sequential": True, "quant_method": "gptq",
                    "checkpoint_format": "gptq" if v1 else "gptq_v2"}
        else:
            qcfg = {"quant_method": "awq", "bits": bits, "group_size": group, "zero_point": True, "version": "gemm"}
        if config_place == "config.json":
            cfg["quantization_config"] = qcfg
        else:
            (folder / config_place).write_text(json.dumps(qcfg, indent=2))
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))
        tensors = {"model.embed_tokens.weight": (rng.standard_normal((64, 64)) * 0.1).astype(np.float16),
                   "model.norm.weight": np.ones(64, dtype=np.float16),
                   "lm_head.weight": (rng.standard_normal((64, 64)) * 0.1).astype(np.float16),
                   "model.layers.0.input_layernorm.weight": np.ones(64, dtype=np.float16),
                   "model.layers.0.post_attention_layernorm.weight": np.ones(64, dtype=np.float16)}
        expected = {}
        for linear, (n, k) in LINEARS.items():
            prefix = f"model.layers.0.{linear}"
            parts, w = quantized_linear(rng, kind, bits, group, desc_act, sym, v1, n, k)
            tensors.update({f"{prefix}.{p}": v for p, v in parts.items()})
            expected[f"{prefix}.weight"] = w
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        save_file(expected, str(folder / "expected.safetensors"))
        print(f"{name}: {len(expected)} linears")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="+", choices=["configs", "tiny", "quant"])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    if "configs" in args.what:
        configs(args.out / "hf")
    if "tiny" in args.what:
        tiny(args.out / "hf")
    if "quant" in args.what:
        quant(args.out)


if __name__ == "__main__":
    main()
