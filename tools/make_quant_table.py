#!/usr/bin/env python3
"""Regenerates the quality/speed table of docs/quantization.md for the default model.

For every format: `marlin quantize` the default model (SmolLM2-135M-Instruct, whose weights are
Q4_1; the baseline is those weights as they are), then on the fixed corpus
(tests/fixtures/corpus/gnu_manuals.txt) `marlin perplexity`, `marlin compare` against the baseline
(KL divergence, top-1 agreement) and `marlin bench` (CPU decode tokens/s). The table replaces the
text between the markers in docs/quantization.md.

  python3 tools/make_quant_table.py [--chunks 16] [--threads 2] [--formats int4-g128 ...] [--marlin BIN]

Runs on the CPU; expect a few minutes per format on a 2-core machine.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DOC = ROOT / "docs" / "quantization.md"
BEGIN, END = "<!-- quant-table:begin -->", "<!-- quant-table:end -->"

# (label, format, method)
FORMATS = [
    ("f16", "f16", "rtn"),
    ("int8-pc", "int8-pc", "rtn"),
    ("fp8-pc", "fp8-pc", "rtn"),
    ("int4-g128 RTN", "int4-g128", "rtn"),
    ("int4-g128 GPTQ", "int4-g128", "gptq"),
    ("int4-g128-asym GPTQ", "int4-g128-asym", "gptq"),
    ("int4-g32 RTN", "int4-g32", "rtn"),
    ("int4-g128-24 GPTQ (2:4)", "int4-g128-24", "gptq"),
    ("fp4-g32 RTN", "fp4-g32", "rtn"),
    ("mxfp4 RTN", "mxfp4", "rtn"),
    ("nvfp4 RTN", "nvfp4", "rtn"),
    ("int3-g128 RTN", "int3-g128", "rtn"),
    ("int3-g128 GPTQ", "int3-g128", "gptq"),
    ("int2-g64 GPTQ", "int2-g64", "gptq"),
]


def run_json(marlin, *args):
    """Runs `marlin ARGS` and returns the JSON object it prints (on one line or several, after any
    other output)."""
    r = subprocess.run([str(marlin), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: marlin {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    lines = r.stdout.strip().splitlines()
    return json.loads("\n".join(lines[max(i for i, line in enumerate(lines) if line.startswith("{")):]))


def replace_table(doc, begin, end, lines, heading):
    """Puts `lines` between the markers `begin` and `end` of the file `doc`; without the markers,
    appends them under a new section `heading`."""
    text = doc.read_text()
    table = begin + "\n" + "\n".join(lines) + "\n" + end
    if begin in text:
        text = text[:text.index(begin)] + table + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + table + "\n"
    doc.write_text(text)


def measure(model, args):
    ppl = run_json(args.marlin, "perplexity", model, "--chunks", args.chunks, "--threads", args.threads, "--json")
    row = {"ppl": ppl["perplexity"], "ppl_err": ppl["perplexity_stderr"]}
    if model != MODEL:
        cmp = run_json(args.marlin, "compare", MODEL, model, "--chunks", args.chunks, "--threads", args.threads,
                       "--json")
        row.update(kl=cmp["mean_kl"], top1=cmp["top1_agreement"])
    bench = run_json(args.marlin, "bench", "--model", model, "--prompt-tokens", 0, "--gen-tokens", 64,
                     "--reps", 3, "--threads", args.threads, "--json")
    row["decode"] = bench["decode_tokens_per_s"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--formats", nargs="*", help="labels to run (default: all)")
    ap.add_argument("--marlin", type=pathlib.Path, default=ROOT / "build" / "marlin",
                    help="the marlin binary (default: build/marlin; pass a copy to rebuild meanwhile)")
    args = ap.parse_args()
    rows = [("Q4_1 (original, baseline)", MODEL.stat().st_size, measure(MODEL, args))]
    with tempfile.TemporaryDirectory() as tmp:
        for label, fmt, method in FORMATS:
            if args.formats and label not in args.formats:
                continue
            out = pathlib.Path(tmp) / f"{label.split()[0]}-{method}.marlin"
            start = time.time()
            subprocess.run([str(args.marlin), "quantize", MODEL, out, "--format", fmt, "--method", method,
                            "--threads", str(args.threads)], check=True, capture_output=True)
            print(f"{label}: quantized in {time.time() - start:.0f} s", file=sys.stderr)
            rows.append((label, out.stat().st_size, measure(out, args)))
            print(f"{label}: {rows[-1][2]}", file=sys.stderr)
    lines = [f"Default model (SmolLM2-135M-Instruct; {MODEL.name}), corpus tests/fixtures/corpus/gnu_manuals.txt, "
             f"{args.chunks} chunks of 512 tokens (second halves scored), CPU decode with {args.threads} threads "
             f"({platform.processor() or platform.machine()}). Embeddings/lm_head are int8-g32 in every "
             f"quantized row (the default rule). KL and top-1 are against the Q4_1 baseline. Regenerate with "
             f"`python3 tools/make_quant_table.py`.",
             "",
             "| format | file MB | perplexity | KL vs baseline | top-1 agreement | decode tok/s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for label, size, r in rows:
        kl = f"{r['kl']:.4f}" if "kl" in r else "—"
        top1 = f"{100 * r['top1']:.1f}%" if "top1" in r else "—"
        lines.append(f"| {label} | {size / 1e6:.1f} | {r['ppl']:.3f} ± {r['ppl_err']:.3f} | {kl} | {top1} | "
                     f"{r['decode']:.1f} |")
    replace_table(DOC, BEGIN, END, lines, "Quality and speed on the default model")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
