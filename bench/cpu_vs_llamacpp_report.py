#!/usr/bin/env python3
"""Combines llama-bench's JSON and `marlin bench --json` into the comparison that
bench/cpu_vs_llamacpp.sh prints: one JSON object on stdout, a readable table on stderr.

llama-bench reports one entry per test (ppN: n_prompt=N, n_gen=0; tgN: n_prompt=0, n_gen=N) with
the tokens/s of every timed repetition in `samples_ts`; we take the median of those, as marlin does
over its own repetitions.
"""
import argparse
import ctypes
import json
import math
import os
import statistics
import sys


def fail(message):
    print(f"cpu_vs_llamacpp_report: {message}", file=sys.stderr)
    sys.exit(1)


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {what} from {path}: {e}")


def find_test(entries, n_prompt, n_gen):
    for entry in entries:
        if entry.get("n_prompt") == n_prompt and entry.get("n_gen") == n_gen:
            return entry
    fail(f"llama-bench output has no test with n_prompt={n_prompt}, n_gen={n_gen}")


def median_tokens_per_s(entry):
    samples = entry.get("samples_ts")
    if not isinstance(samples, list) or not samples:
        fail("llama-bench test entry has no samples_ts")
    return statistics.median(float(s) for s in samples)


def llamacpp_system_info(lib_dir):
    """The system_info line of the llama.cpp build (llama_print_system_info from libllama)."""
    path = os.path.join(lib_dir, "libllama.so")
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return f"unavailable ({e})"
    lib.llama_print_system_info.restype = ctypes.c_char_p
    return lib.llama_print_system_info().decode("utf-8", "replace").strip()


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_share(times_path, threads):
    """CPU seconds the engine got over wall seconds x threads (warm-up and loading included);
    well below 1 means other processes took the CPU and the figures are depressed."""
    try:
        with open(times_path, encoding="utf-8") as f:
            wall, user, system = (float(x) for x in f.read().split()[-3:])
    except (OSError, ValueError) as e:
        fail(f"cannot read run times from {times_path}: {e}")
    return round((user + system) / (wall * threads), 3) if wall > 0 else None


def llamacpp_figures(args):
    entries = load_json(args.llamacpp_json, "llama-bench output")
    if not isinstance(entries, list):
        fail("llama-bench output is not a JSON list")
    pp = find_test(entries, args.prompt_tokens, 0)
    tg = find_test(entries, 0, args.gen_tokens)
    for entry in (pp, tg):
        if entry.get("n_threads") != args.threads:
            fail(f"llama-bench ran with {entry.get('n_threads')} threads, expected {args.threads}")
    return {
        "prefill_tokens_per_s": median_tokens_per_s(pp),
        "decode_tokens_per_s": median_tokens_per_s(tg),
        "version": f"{args.llamacpp_version} (llama.cpp {pp.get('build_commit')})",
        "prefill_samples_tokens_per_s": pp["samples_ts"],
        "decode_samples_tokens_per_s": tg["samples_ts"],
        "model_type": pp.get("model_type"),
        "flash_attn": pp.get("flash_attn"),
        "n_batch": pp.get("n_batch"),
        "n_ubatch": pp.get("n_ubatch"),
        "cpu_share": cpu_share(args.llamacpp_times, args.threads),
        "compiler": args.compiler,
        "system_info": llamacpp_system_info(args.llamacpp_lib_dir),
    }


def marlin_figures(args):
    if args.marlin_unavailable is not None:
        return {"available": False, "reason": args.marlin_unavailable}
    if args.marlin_times is None:
        fail("--marlin-json needs --marlin-times")
    result = load_json(args.marlin_json, "`marlin bench --json` output")
    if not isinstance(result, dict):
        fail("`marlin bench --json` did not print a JSON object")
    for key in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        value = result.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            fail(f"`marlin bench --json` gave {key}={value!r}, expected a positive number")
    return {"available": True, **result, "cpu_share": cpu_share(args.marlin_times, args.threads)}


def print_table(report, file):
    ours, peer = report["marlin"], report["llamacpp"]
    rows = [("prefill", "prefill_tokens_per_s", f"pp{report['prompt_tokens']}"),
            ("decode", "decode_tokens_per_s", f"tg{report['gen_tokens']}")]
    print(f"\n{report['machine']}; model {os.path.basename(report['model'])}; "
          f"median of {report['reps']} reps", file=file)
    print(f"{'test':<14}{'llama.cpp tok/s':>17}{'marlin tok/s':>15}{'marlin/llama.cpp':>18}", file=file)
    for name, key, label in rows:
        ratio = report["ratio"][name] if report["ratio"] else None
        ours_text = f"{ours[key]:.1f}" if ours["available"] else "n/a"
        ratio_text = f"{ratio:.3f}" if ratio is not None else "n/a"
        print(f"{name + ' ' + label:<14}{peer[key]:>17.1f}{ours_text:>15}{ratio_text:>18}", file=file)
    if not ours["available"]:
        print(f"marlin unavailable: {ours['reason']}", file=file)
    shares = [f"llama.cpp {peer['cpu_share']}"] + ([f"marlin {ours['cpu_share']}"] if ours["available"] else [])
    print(f"CPU share (1 = all {report['threads']} threads busy the whole run): {', '.join(shares)}",
          file=file)
    print(f"llama.cpp: {peer['version']}; {peer['system_info']}", file=file)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--llamacpp-json", required=True)
    parser.add_argument("--llamacpp-times", required=True)
    parser.add_argument("--llamacpp-lib-dir", required=True)
    parser.add_argument("--llamacpp-version", required=True)
    parser.add_argument("--compiler", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--prompt-tokens", type=int, required=True)
    parser.add_argument("--gen-tokens", type=int, required=True)
    parser.add_argument("--reps", type=int, required=True)
    parser.add_argument("--model", required=True)
    ours = parser.add_mutually_exclusive_group(required=True)
    ours.add_argument("--marlin-json")
    ours.add_argument("--marlin-unavailable", metavar="REASON")
    parser.add_argument("--marlin-times")
    args = parser.parse_args()

    report = {
        "machine": f"{cpu_model()}, {args.threads} threads",
        "model": args.model,
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "reps": args.reps,
        "llamacpp": llamacpp_figures(args),
        "marlin": marlin_figures(args),
    }
    ours, peer = report["marlin"], report["llamacpp"]
    report["ratio"] = None
    if ours["available"]:
        report["ratio"] = {
            "prefill": ours["prefill_tokens_per_s"] / peer["prefill_tokens_per_s"],
            "decode": ours["decode_tokens_per_s"] / peer["decode_tokens_per_s"],
        }
    print(json.dumps(report, indent=2))
    print_table(report, sys.stderr)


if __name__ == "__main__":
    main()
