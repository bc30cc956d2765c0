"""The deepseek2 GGUF fixtures (tools/make_mla_gguf_fixtures.py) against llama.cpp itself, through
llama-cpp-python: llama.cpp must accept their layout (names, shapes, metadata, the GLM file's MTP
block), and on the all-F32 DeepSeek-V3 file (YaRN, split attn_k_b/attn_v_b) with an F32 KV cache
its logits must match transformers' as closely as transformers' own fp32 run does (2x its error).
The F16 files are only loaded: llama.cpp rounds activations to fp16 against F16 weights.

llama.cpp needs a tokenizer entry to load a model, so each file is copied with
tokenizer.ggml.model = "none" added; nothing else changes."""
import json
import pathlib

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "model"


def with_no_vocab(name: str, out_dir: pathlib.Path) -> pathlib.Path:
    reader = gguf.GGUFReader(str(FIXTURES / f"{name}.gguf"))
    out = out_dir / f"{name}.gguf"
    w = gguf.GGUFWriter(str(out), "deepseek2")
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), field.types[0], sub_type=sub_type)
    w.add_string("tokenizer.ggml.model", "none")
    for t in reader.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_shape=[int(d) for d in reversed(t.shape)], raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def llama_cpp_logits(path: pathlib.Path, tokens: list[int]) -> np.ndarray:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True, n_threads=2, verbose=False,
                          type_k=int(gguf.GGMLQuantizationType.F32), type_v=int(gguf.GGMLQuantizationType.F32),
                          flash_attn=False)
    llm.eval(tokens)
    return np.array(llm.scores[:len(tokens)], dtype=np.float64)


def test_f32_deepseek_v3_matches_transformers(tmp_path):
    ref = json.loads((FIXTURES / "tiny_mla_v3.json").read_text())
    expected = np.fromfile(FIXTURES / "tiny_mla_v3.logits.f64").reshape(ref["positions"], ref["vocab"])
    logits = llama_cpp_logits(with_no_vocab("tiny_mla_v3", tmp_path), ref["tokens"])
    assert np.abs(logits - expected).max() <= 2 * ref["fp32_max_abs_error"]


@pytest.mark.parametrize("name", ["tiny_mla_glm", "tiny_mla_v3_moe"])
def test_llama_cpp_accepts_the_layout(tmp_path, name):
    ref = json.loads((FIXTURES / f"{name}.json").read_text())
    logits = llama_cpp_logits(with_no_vocab(name, tmp_path), ref["tokens"][:8])
    assert logits.shape == (8, ref["vocab"]) and np.isfinite(logits).all()
