"""Reference tokenizers from HF `tokenizers` / transformers, built from the GGUF files' metadata
(read with the `gguf` package). Shared by tools/make_tokenizer_fixtures.py and the pytest
parity tests.

  smollm2_published(meta)   SmolLM2 as its published tokenizer.json is configured:
                            Digits(individual) + ByteLevel, ByteLevel decoder, control tokens special
  transformers_gguf(meta, pre=None)
                            transformers' own GGUF builder (integrations/gguf), optionally with
                            tokenizer.ggml.pre overridden (to get the Llama-3 / Qwen2 splits)
"""
import pathlib

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"

_CONTROL = 3


def _field_value(field):
    """A GGUF metadata value, decoding string arrays quickly."""
    types = field.types
    if types[0] == gguf.GGUFValueType.ARRAY and types[-1] == gguf.GGUFValueType.STRING:
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    if types[0] == gguf.GGUFValueType.ARRAY:
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.contents()


def read_metadata(path):
    """general.architecture and the tokenizer.* keys of a GGUF file."""
    reader = gguf.GGUFReader(str(path))
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.") or key == "general.architecture":
            meta[key] = _field_value(field)
    return meta


def _tokenizer_dict(meta):
    from transformers.integrations.gguf import gguf_tokenizer_mapping as mapping

    out = {}
    for key, name in mapping.GGUF_TOKENIZER_MAPPING["tokenizer"].items():
        if "tokenizer." + key in meta:
            out[name] = meta["tokenizer." + key]
    return out


def transformers_gguf(meta, pre=None):
    """The tokenizers.Tokenizer transformers builds from this GGUF metadata."""
    from transformers.integrations.gguf import gguf_tokenizer_mapping as mapping

    d = _tokenizer_dict(meta)
    if pre is not None:
        d["pre_tokenizer_type"] = pre
    backend, _ = mapping.convert_gguf_tokenizer(meta["general.architecture"], d)
    return backend


def smollm2_published(meta):
    """SmolLM2's published tokenizer.json configuration, with the GGUF's vocabulary and merges."""
    tokens = meta["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    control = [t for t, kind in zip(tokens, meta["tokenizer.ggml.token_type"]) if kind == _CONTROL]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok
