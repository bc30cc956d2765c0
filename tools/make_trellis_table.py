#!/usr/bin/env python3
"""Regenerates the trellis quality table of docs/quantization.md: perplexity and KL against bits
per weight on the fixed corpus for the default model (or --model), trellis at 2, 2.5, 3 and 4 bits
(and 2.99 and 3.99, whose widths are planned per linear by trial) against int2/int3/int4 with RTN
and GPTQ.

Every row is quantized (`marlin quantize`, on the CPU with --threads) into --workdir, then measured
(`marlin perplexity`, `marlin compare` against the unquantized model, on --device). The workdir
keeps the quantized files and one JSON result per row, so a second invocation skips what is done
(a row cut off by a time limit starts over). Each result is printed as a JSON line when it is done.
--write-doc measures nothing: it rewrites the table between the markers from the stored results.

  python3 tools/make_trellis_table.py --workdir W [--rows trellis3-gptq int3-g128-gptq ...]
  python3 tools/make_trellis_table.py --workdir W --write-doc
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

from make_quant_table import DOC, MODEL, ROOT, replace_table, run_json

BEGIN, END = "<!-- trellis-table:begin -->", "<!-- trellis-table:end -->"

# id -> (label, `marlin quantize` arguments); the baseline is the model as it is.
ROWS = {
    "baseline": ("baseline, as stored", None),
    "trellis2-gptq": ("trellis 2 (rotation + LDLQ)", ["--format", "trellis", "--bits", "2", "--method", "gptq"]),
    "trellis2.5-gptq": ("trellis 2.5 (rotation + LDLQ)", ["--format", "trellis", "--bits", "2.5", "--method", "gptq"]),
    "trellis3-gptq": ("trellis 3 (rotation + LDLQ)", ["--format", "trellis", "--bits", "3", "--method", "gptq"]),
    "trellis2.99-gptq": ("trellis 2.99 (widths by trial)",
                         ["--format", "trellis", "--bits", "2.99", "--method", "gptq"]),
    "trellis4-gptq": ("trellis 4 (rotation + LDLQ)", ["--format", "trellis", "--bits", "4", "--method", "gptq"]),
    "trellis3.99-gptq": ("trellis 3.99 (widths by trial)",
                         ["--format", "trellis", "--bits", "3.99", "--method", "gptq"]),
    "trellis3-rtn": ("trellis 3 (tiles alone)", ["--format", "trellis", "--bits", "3"]),
    "trellis4-rtn": ("trellis 4 (tiles alone)", ["--format", "trellis", "--bits", "4"]),
    "int2-g64-rtn": ("int2-g64 RTN", ["--format", "int2-g64"]),
    "int2-g64-gptq": ("int2-g64 GPTQ", ["--format", "int2-g64", "--method", "gptq"]),
    "int3-g128-rtn": ("int3-g128 RTN", ["--format", "int3-g128"]),
    "int3-g128-gptq": ("int3-g128 GPTQ", ["--format", "int3-g128", "--method", "gptq"]),
    "int4-g128-rtn": ("int4-g128 RTN", ["--format", "int4-g128"]),
    "int4-g128-gptq": ("int4-g128 GPTQ", ["--format", "int4-g128", "--method", "gptq"]),
}
UNQUANTIZED = {"f32", "f16", "bf16"}


def linear_stats(marlin, model, quantized_only):
    """Stored bits per weight (scales included) and the formats of the blocks' linears: 2-D tensors
    of a layer (norms, embeddings and the head are left out), with `quantized_only` those not in a
    floating point format (as routers stay)."""
    report = run_json(marlin, "inspect", model, "--json", "--tensors")
    bits = weights = 0
    formats = set()
    for t in report["tensors"]:
        shape = [t["rows"], t["cols"]] if "rows" in t else t["shape"]
        fmt = t.get("format", t.get("type", "")).lower()
        in_block = ".layers." in t["name"] or t["name"].startswith("blk.")
        if in_block and len(shape) == 2 and min(shape) > 1 and (fmt not in UNQUANTIZED or not quantized_only):
            bits += 8 * t["bytes"]
            weights += shape[0] * shape[1]
            formats.add(fmt)
    return (bits / weights if weights else None), sorted(formats)


def size_mb(path):
    """A checkpoint's size: the file, or a folder's files."""
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files) / 1e6


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or platform.machine())
    gpu = None
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True)
        gpu = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    return {"cpu": f"{cpu}, {os.cpu_count()} cores", "gpu": gpu}


def eval_args(args):
    """Arguments of `marlin perplexity` and `marlin compare` besides the models."""
    out = ["--chunks", args.chunks, "--ctx", args.ctx, "--device", args.device, "--json"]
    return out + (["--text", args.text] if args.text else [])


def quantize(row_id, args):
    """The row's checkpoint in the workdir (quantized now unless it is there), the seconds that took,
    the threads it had and whether marlin searched trellis tiles on a GPU."""
    out, info = args.workdir / f"{row_id}.marlin", args.workdir / f"{row_id}.quantize.json"
    settings = {"model": str(args.model.resolve()), "quantize_args": ROWS[row_id][1] + args.calibration_args}
    if out.exists():
        done = json.loads(info.read_text())
        if done["settings"] != settings:
            sys.exit(f"error: {out} was quantized with {done['settings']}, not {settings}: use another --workdir")
        return out, done["seconds"], done["threads"], done.get("gpu_search", False)
    partial = args.workdir / f"{row_id}.partial.marlin"
    start = time.time()
    r = subprocess.run([str(args.marlin), "quantize", args.model, partial, *settings["quantize_args"], "--threads",
                        str(args.threads)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: quantizing {row_id} failed: {r.stderr.strip()}")
    seconds = time.time() - start
    gpu_search = "searching tiles on the GPU" in r.stderr  # marlin says so once when it does
    info.write_text(json.dumps({"settings": settings, "seconds": seconds, "threads": args.threads,
                                "gpu_search": gpu_search, "machine": machine(),
                                "log": r.stdout.strip().splitlines()[-1:]}))
    partial.rename(out)  # last: a checkpoint in the workdir is a whole one with its quantize.json
    return out, seconds, args.threads, gpu_search


def measure(row_id, args):
    model, seconds, threads, gpu_search = ((args.model, None, None, False) if ROWS[row_id][1] is None
                                           else quantize(row_id, args))
    ppl = run_json(args.marlin, "perplexity", model, *eval_args(args))
    bits, formats = linear_stats(args.marlin, model, quantized_only=seconds is not None)
    label = ROWS[row_id][0] + (f" ({', '.join(formats)})" if seconds is None else "")
    row = {"id": row_id, "label": label, **measurement_settings(args), "bits_per_weight": bits,
           "linear_formats": formats, "file_mb": size_mb(model),
           "ppl": ppl["perplexity"], "ppl_err": ppl["perplexity_stderr"], "kl": None, "top1": None,
           "quantize_s": seconds, "quantize_threads": threads, "quantize_gpu_search": gpu_search,
           "machine": machine(), "date": datetime.date.today().isoformat()}
    if model != args.model:
        cmp = run_json(args.marlin, "compare", args.model, model, *eval_args(args))
        row.update(kl=cmp["mean_kl"], top1=cmp["top1_agreement"])
    return row


def measurement_settings(args):
    """What makes two rows' numbers comparable."""
    return {"model": args.model.name, "chunks": args.chunks, "ctx": args.ctx,
            "text": str(args.text or "tests/fixtures/corpus/gnu_manuals.txt"), "device": args.device}


def expected_seconds(row_id, args):
    """A pending row's time, judged from the slowest finished row of its kind (trellis or integer):
    its quantization unless the checkpoint is there, and the measurement; 0 with none to go by."""
    kind = row_id.split("-")[0].rstrip("0123456789.")
    done = [json.loads((args.workdir / f"{r}.json").read_text()) for r in ROWS
            if r.startswith(kind) and (args.workdir / f"{r}.json").exists()]
    quantize_s = [r["quantize_s"] for r in done if r["quantize_s"] is not None]
    quantized = ROWS[row_id][1] is None or (args.workdir / f"{row_id}.marlin").exists()
    return (0 if quantized else max(quantize_s, default=0)) + max((r["measure_s"] for r in done), default=0)


def run_rows(args):
    start = time.time()
    args.workdir.mkdir(parents=True, exist_ok=True)
    settings = measurement_settings(args)
    pending = []
    for row_id in [r for r in ROWS if not args.rows or r in args.rows]:
        result = args.workdir / f"{row_id}.json"
        if result.exists() and settings.items() <= json.loads(result.read_text()).items():
            print(f"{row_id}: done already ({result})", file=sys.stderr, flush=True)
        elif args.budget and time.time() - start + expected_seconds(row_id, args) > args.budget:
            pending.append(row_id)
        else:
            row_start = time.time()
            row = measure(row_id, args)
            row["measure_s"] = time.time() - row_start - (row["quantize_s"] or 0)
            tmp = result.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(row, indent=1))
            tmp.rename(result)
            print(json.dumps(row), flush=True)
    if pending:
        print(f"--budget {args.budget:.0f} s reached; run again for: {' '.join(pending)}", file=sys.stderr, flush=True)


def table_lines(rows):
    first = rows[0]
    machines = sorted({(r["machine"]["cpu"], r["machine"]["gpu"]) for r in rows})
    dates = sorted({r["date"] for r in rows})
    threads = sorted({r["quantize_threads"] for r in rows if r["quantize_threads"]})
    gpu_search = any(r.get("quantize_gpu_search") for r in rows)
    lines = [f"{first['model']}, {first['text']}, {first['chunks']} chunks of {first['ctx']} tokens (second halves "
             f"scored), perplexity and compare on {first['device']}. Bits/weight: what the blocks' quantized linears "
             f"store, scales included (embeddings and the head are int8-g32 in every quantized row). KL and top-1 "
             f"against the baseline (the model as stored). Quantize seconds: CPU, "
             f"{'/'.join(map(str, threads)) or '—'} threads"
             f"{', the trellis rows searching their tiles on the GPU' if gpu_search else ''}.",
             "",
             "| format | bits/weight | file MB | perplexity | KL vs baseline | top-1 agreement | quantize s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        bits = f"{r['bits_per_weight']:.3f}" if r["bits_per_weight"] else "—"
        kl = f"{r['kl']:.4f}" if r["kl"] is not None else "—"
        top1 = f"{100 * r['top1']:.1f}%" if r["top1"] is not None else "—"
        quant = f"{r['quantize_s']:.0f}" if r["quantize_s"] is not None else "—"
        lines.append(f"| {r['label']} | {bits} | {r['file_mb']:.1f} | {r['ppl']:.3f} ± {r['ppl_err']:.3f} | {kl} | "
                     f"{top1} | {quant} |")
    where = "; ".join(f"CPU {cpu}" + (f", GPU {gpu}" if gpu else "") for cpu, gpu in machines)
    lines += ["", f"Measured on {where}, {' to '.join(dict.fromkeys([dates[0], dates[-1]]))}. Regenerate with "
              f"`python3 tools/make_trellis_table.py` (see above)."]
    return lines


def write_doc(args):
    rows = [json.loads((args.workdir / f"{i}.json").read_text()) for i in ROWS if (args.workdir / f"{i}.json").exists()]
    if not rows:
        sys.exit(f"error: {args.workdir} holds no results")
    settings = {(r["model"], r["chunks"], r["ctx"], r["text"], r["device"]) for r in rows}
    if len(settings) > 1:
        sys.exit(f"error: the results in {args.workdir} were measured differently: {sorted(settings)}")
    lines = table_lines(rows)
    replace_table(args.doc, BEGIN, END, lines, "Trellis against integer formats")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=pathlib.Path, required=True,
                    help="keeps the quantized checkpoints and the per-row results between invocations")
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to run (default: all), in table order")
    ap.add_argument("--write-doc", action="store_true",
                    help="measure nothing; rewrite the table in --doc from the results in --workdir")
    ap.add_argument("--doc", type=pathlib.Path, default=DOC, help="the document holding the table markers")
    ap.add_argument("--model", type=pathlib.Path, default=MODEL, help="the model to quantize (default: %(default)s)")
    ap.add_argument("--marlin", type=pathlib.Path, default=ROOT / "build" / "marlin", help="the marlin binary")
    ap.add_argument("--budget", type=float,
                    help="seconds: start no row expected to end later than this (judged from the slowest finished "
                         "row of its kind), so that a time-limited command ends between rows")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where perplexity and compare run")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="marlin quantize's worker threads")
    ap.add_argument("--chunks", type=int, default=16, help="corpus chunks scored (0: all)")
    ap.add_argument("--ctx", type=int, default=512, help="tokens per chunk")
    ap.add_argument("--text", type=pathlib.Path, help="evaluation text (default: the repository's corpus)")
    ap.add_argument("--calibration", type=pathlib.Path, help="calibration text (default: marlin's)")
    ap.add_argument("--calibration-samples", type=int, help="calibration sequences (default: marlin's)")
    ap.add_argument("--calibration-ctx", type=int, help="tokens per calibration sequence (default: marlin's)")
    args = ap.parse_args()
    if args.write_doc:
        write_doc(args)
        return
    calibration = (("--calibration", args.calibration and args.calibration.resolve()),
                   ("--calibration-samples", args.calibration_samples), ("--calibration-ctx", args.calibration_ctx))
    args.calibration_args = [str(x) for flag, value in calibration if value is not None for x in (flag, value)]
    run_rows(args)


if __name__ == "__main__":
    main()
