#!/usr/bin/env python3
"""marlin serve against llama.cpp's server (llama-cpp-python[server]) under the same load.

Starts both on free loopback ports with the same model, context and threads, checks that every
prompt yields exactly --max-tokens tokens on each (temperature 0, finish_reason "length"), then
runs bench/serve_load.py's load (same prompts, max_tokens, time and request bounds) at each
concurrency, alternating which server goes first so machine noise hits both alike, --repeats
times. Prints JSON lines: one "setup" line, one line per (server, concurrency) with the median and
spread over the repeats, one "ratio" line per concurrency (marlin / llama.cpp); --markdown adds a
table.

  python3 bench/serve_compare.py --threads 2 --markdown

llama-cpp-python's server runs one request at a time: a lock around its single llama.cpp context
serializes requests (the others wait, which shows in their time to first token). It is started
with --interrupt_requests False so that a new request queues instead of cutting a streaming one
short. It does not report usage on streams, so a request that ends for "length" counts max_tokens.
Install it (benchmark only, builds llama.cpp from source): see docs/server.md.
"""
import argparse
import datetime
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402  (the load generator shared with serve_load.py)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
# Open-ended requests, so that at temperature 0 neither server reaches end-of-sequence early.
QUESTIONS = ["Write a long story about a fox who finds a lost key in the forest.",
             "Explain in detail how a CPU executes a program, step by step.",
             "Describe the history of the city of Paris at length.",
             "Write a long essay about the sea and the people who live by it.",
             "Give a detailed guide to learning to cook, with many tips.",
             "Explain in detail why the sky is blue and why sunsets are red.",
             "Write a long letter to a friend about a trip to the mountains.",
             "Describe in detail how bread is made, from the field to the table."]
METRICS = ["aggregate_tokens_per_s", "ttft_ms_p50", "ttft_ms_p99", "itl_ms_p50", "itl_ms_p99"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """user + system CPU time of a process, in seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_json(port, method, path, body=None, timeout=300):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)
    finally:
        conn.close()


class Server:
    """A server process on a loopback port; stderr goes to a log file."""

    def __init__(self, name, cmd, port, log_dir):
        self.name, self.cmd, self.port = name, cmd, port
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                request_json(self.port, "GET", "/v1/models", timeout=5)
                return
            except (OSError, RuntimeError):
                time.sleep(0.5)
        self.stop()
        tail = self.log_path.read_text()[-2000:]
        sys.exit(f"{self.name} did not start: {' '.join(self.cmd)}\n{tail}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_servers(args, log_dir):
    mport, lport = free_port(), free_port()
    marlin = Server("marlin", [args.marlin, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", str(mport),
                               "-t", str(args.threads), "--ctx", str(args.ctx), "--max-batch", str(args.max_batch),
                               "--max-queue", str(max(args.concurrency) + 8)], mport, log_dir)
    llama = Server("llama.cpp", [args.python, "-m", "llama_cpp.server", "--model", args.model, "--host", "127.0.0.1",
                                 "--port", str(lport), "--n_ctx", str(args.ctx), "--n_threads", str(args.threads),
                                 "--n_threads_batch", str(args.threads), "--interrupt_requests", "False"],
                   lport, log_dir)
    for s in (marlin, llama):
        s.wait_ready(180)
    return [marlin, llama]


def preflight(servers, max_tokens):
    """Each prompt once per server, not streamed: both must generate exactly max_tokens tokens.
    Returns prompt token counts per server and how many answers are the same text on both."""
    prompt_tokens, texts = {}, {}
    for s in servers:
        prompt_tokens[s.name], texts[s.name] = [], []
        for q in QUESTIONS:
            r = request_json(s.port, "POST", "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": q}], "max_tokens": max_tokens,
                              "temperature": 0})
            usage, choice = r["usage"], r["choices"][0]
            if usage["completion_tokens"] != max_tokens or choice["finish_reason"] != "length":
                sys.exit(f"{s.name} generated {usage['completion_tokens']} tokens (finish_reason "
                         f"{choice['finish_reason']!r}) for {q!r}, not max_tokens={max_tokens}; "
                         "pick a smaller --max-tokens")
            prompt_tokens[s.name].append(usage["prompt_tokens"])
            texts[s.name].append(choice["message"]["content"])
    same = sum(a == b for a, b in zip(*texts.values()))
    return prompt_tokens, same


def measure(server, others, args, concurrency):
    """One load level on `server`; also the CPU seconds the other servers used meanwhile (idle check)."""
    before = {o.name: cpu_seconds(o.proc.pid) for o in others}
    level = serve_load.run_level("127.0.0.1", server.port, "", concurrency, args.seconds, args.max_requests,
                                 args.max_tokens, questions=QUESTIONS, request_timeout=args.request_timeout)
    level["idle_peer_cpu_s"] = round(sum(cpu_seconds(o.proc.pid) - before[o.name] for o in others), 2)
    return level


def summarize(runs):
    """Median of each metric over repeats, with the throughput's min and max."""
    out = {"repeats": len(runs), "requests": sum(r["requests"] for r in runs),
           "errors": sum(r["errors"] for r in runs), "generated_tokens": sum(r["generated_tokens"] for r in runs)}
    for m in METRICS:
        values = [r[m] for r in runs if r[m] is not None]
        out[m] = round(statistics.median(values), 1) if values else None
    tps = [r["aggregate_tokens_per_s"] for r in runs]
    out["aggregate_tokens_per_s_min"], out["aggregate_tokens_per_s_max"] = min(tps), max(tps)
    out["aggregate_tokens_per_s_runs"] = tps
    out["idle_peer_cpu_s_max"] = max(r["idle_peer_cpu_s"] for r in runs)
    errors = [r["first_error"] for r in runs if "first_error" in r]
    if errors:
        out["first_error"] = errors[0]
    return out


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "unknown")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def llama_cpp_version(python):
    r = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        sys.exit("llama-cpp-python is not installed for " + python + " (see docs/server.md, Benchmark)")
    return r.stdout.strip()


def markdown(rows, ratios):
    lines = ["| concurrency | server | tok/s median (min–max) | TTFT p50 / p99 ms | ITL p50 / p99 ms |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['server']} | {r['aggregate_tokens_per_s']} "
                     f"({r['aggregate_tokens_per_s_min']}–{r['aggregate_tokens_per_s_max']}) | "
                     f"{r['ttft_ms_p50']} / {r['ttft_ms_p99']} | {r['itl_ms_p50']} / {r['itl_ms_p99']} |")
    lines.append("")
    lines.append("| concurrency | marlin / llama.cpp tok/s | marlin ÷ its own concurrency-1 tok/s |")
    lines.append("| --- | --- | --- |")
    for r in ratios:
        lines.append(f"| {r['concurrency']} | {r['throughput_ratio']} | {r['marlin_scaling_vs_c1']} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="GGUF model both servers load")
    p.add_argument("--marlin", default=str(ROOT / "build" / "marlin"), help="marlin binary")
    p.add_argument("--python", default=sys.executable, help="Python with llama-cpp-python[server] installed")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of both servers")
    p.add_argument("--ctx", type=int, default=512, help="context per sequence (marlin --ctx, llama.cpp --n_ctx)")
    p.add_argument("--max-batch", type=int, default=32, help="marlin serve --max-batch")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=20, help="time per level (requests in flight finish)")
    p.add_argument("--max-requests", type=int, default=128, help="most requests per level")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request")
    p.add_argument("--repeats", type=int, default=3, help="measurements per (server, concurrency)")
    p.add_argument("--request-timeout", type=float, default=600,
                   help="socket timeout of one request (a serialized server makes requests wait long)")
    p.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = p.parse_args()
    for name in ("threads", "ctx", "max_batch", "seconds", "max_requests", "max_tokens", "repeats"):
        if getattr(args, name) <= 0:
            sys.exit(f"--{name.replace('_', '-')} must be positive")
    if min(args.concurrency) <= 0:
        sys.exit("--concurrency values must be positive")
    if not Path(args.marlin).is_file():
        sys.exit(f"no marlin binary at {args.marlin} (build it first)")
    version = llama_cpp_version(args.python)

    setup = {"setup": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "cpu": cpu_model(), "nproc": os.cpu_count(), "loadavg_start": os.getloadavg(),
                       "model": Path(args.model).name, "threads": args.threads, "ctx": args.ctx,
                       "max_batch": args.max_batch, "max_tokens": args.max_tokens, "seconds": args.seconds,
                       "max_requests": args.max_requests, "repeats": args.repeats,
                       "llama_cpp_python": version}}
    results = {}
    with tempfile.TemporaryDirectory(prefix="serve_compare_") as log_dir:
        servers = start_servers(args, log_dir)
        try:
            for s in servers:  # warm up
                serve_load.stream_one("127.0.0.1", s.port, "", "Hi", 4, timeout=120)
            prompt_tokens, same = preflight(servers, args.max_tokens)
            setup["setup"]["prompt_tokens"] = prompt_tokens
            setup["setup"]["answers_identical_text"] = f"{same}/{len(QUESTIONS)}"
            for rep in range(args.repeats):
                for i, c in enumerate(args.concurrency):
                    order = servers if (rep + i) % 2 == 0 else servers[::-1]
                    for s in order:
                        level = measure(s, [o for o in servers if o is not s], args, c)
                        results.setdefault((s.name, c), []).append(level)
                        print(json.dumps({"progress": s.name, "repeat": rep, **level}), file=sys.stderr, flush=True)
        finally:
            for s in servers:
                s.stop()
    setup["setup"]["loadavg_end"] = os.getloadavg()
    print(json.dumps(setup))
    rows = []
    for c in args.concurrency:
        for name in ("marlin", "llama.cpp"):
            rows.append({"server": name, "concurrency": c, **summarize(results[(name, c)])})
            print(json.dumps(rows[-1]))
    by = {(r["server"], r["concurrency"]): r for r in rows}
    base = by[("marlin", 1)]["aggregate_tokens_per_s"] if 1 in args.concurrency else None
    ratios = []
    for c in args.concurrency:
        ours, theirs = by[("marlin", c)]["aggregate_tokens_per_s"], by[("llama.cpp", c)]["aggregate_tokens_per_s"]
        ratios.append({"ratio": "marlin / llama.cpp", "concurrency": c,
                       "throughput_ratio": round(ours / theirs, 2) if theirs else None,
                       "marlin_scaling_vs_c1": round(ours / base, 2) if base else None})
        print(json.dumps(ratios[-1]))
    if args.markdown:
        print()
        print(markdown(rows, ratios))


if __name__ == "__main__":
    main()
