#!/usr/bin/env python3
"""A small real layer for tests/quant/test_trellis_quantize.cpp: the first 64 rows and 128 input
features of SmolLM2-135M's layer-0 q_proj (dequantized from the default model's Q4_1), and the
Hessian H = 2·XᵀX/n of those 128 features of its real input, X = attn_norm(token embedding), over
8192 tokens drawn with Zipf(1.2) frequencies by id (BPE vocabularies put frequent tokens at low
ids). Writes tests/fixtures/quant/trellis_layer0_w.f32 (64 × 128 float32, row-major) and
trellis_layer0_h.f64 (128 × 128 float64), little-endian.

    python3 tools/make_trellis_layer_fixture.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import os
import sys

import gguf
import numpy as np

ROWS, COLS, TOKENS = 64, 128, 8192


def dequantize(tensors, name):
    t = tensors[name]
    return gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1, int(t.shape[0])).astype(np.float32)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    emb = dequantize(tensors, "token_embd.weight")
    norm = dequantize(tensors, "blk.0.attn_norm.weight").reshape(-1)
    ids = np.minimum(np.random.default_rng(0).zipf(1.2, TOKENS), emb.shape[0] - 1)
    x = emb[ids].astype(np.float64)
    x = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5) * norm  # RMSNorm, eps of SmolLM2
    x = x[:, :COLS]
    h = 2.0 * (x.T @ x) / TOKENS
    w = dequantize(tensors, "blk.0.attn_q.weight")[:ROWS, :COLS]
    out = os.path.join(root, "tests", "fixtures", "quant")
    w.astype("<f4").tofile(os.path.join(out, "trellis_layer0_w.f32"))
    h.astype("<f8").tofile(os.path.join(out, "trellis_layer0_h.f64"))


if __name__ == "__main__":
    main()
