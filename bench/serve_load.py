#!/usr/bin/env python3
"""Load test of an OpenAI-compatible server on loopback: at each concurrency, that many clients
stream chat completions back to back for a bounded time; prints JSON with the aggregate generated
tokens/s and p50/p99 time-to-first-token and inter-token latency per concurrency.

  python3 bench/serve_load.py                          # starts `marlin serve` on the default model
  python3 bench/serve_load.py --url http://127.0.0.1:8080 --model ID   # an already running server

Generated tokens of a request: the final usage figure when the server reports it
(`stream_options.include_usage`), else max_tokens when it finished for length, else its streamed
content chunks (marlin and llama.cpp's servers send one chunk per token). bench/serve_compare.py
runs the same load against marlin serve and llama-cpp-python's server side by side.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import http.client

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["Tell me about the sea.", "Write a short poem about autumn.", "Explain what a CPU does.",
             "Describe a cat to someone who has never seen one.", "What makes a good breakfast?",
             "Give three tips for learning to cook.", "Why is the sky blue?", "Tell me a story about a fox."]


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def stream_one(host, port, model, question, max_tokens, timeout, extra=None):
    """(time to first token, inter-token gaps, generated tokens) of one streamed chat completion;
    `extra` adds request fields."""
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, **(extra or {})}
    if model:
        body["model"] = model
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    first, last, gaps, chunks, usage, finish = None, None, [], 0, None, None
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("usage"):
            usage = event["usage"].get("completion_tokens")
        finish = next((c["finish_reason"] for c in event.get("choices") or [] if c.get("finish_reason")), finish)
        if not any((c.get("delta") or {}).get("content") for c in event.get("choices") or []):
            continue
        now = time.perf_counter()
        if first is None:
            first = now - start
        else:
            gaps.append(now - last)
        last = now
        chunks += 1
    conn.close()
    if usage is None:
        usage = max_tokens if finish == "length" else chunks
    return first, gaps, usage


def run_level(host, port, model, concurrency, seconds, max_requests, max_tokens, questions=QUESTIONS, extra=None,
              request_timeout=None):
    ttft, itl, tokens, errors = [], [], [0], []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    started = [0]

    def client(i):
        n = 0
        while time.perf_counter() < deadline:
            with lock:
                if started[0] >= max_requests:
                    return
                started[0] += 1
            try:
                first, gaps, count = stream_one(host, port, model, questions[(i + n) % len(questions)], max_tokens,
                                                timeout=request_timeout or seconds + 60, extra=extra)
            except Exception as e:  # counted and reported
                with lock:
                    errors.append(repr(e))
                return
            n += 1
            with lock:
                if first is not None:
                    ttft.append(first)
                itl.extend(gaps)
                tokens[0] += count

    begin = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    ms = lambda v: None if v is None else round(v * 1000, 1)
    return {"concurrency": concurrency, "requests": len(ttft), "errors": len(errors), "seconds": round(elapsed, 1),
            "generated_tokens": tokens[0], "aggregate_tokens_per_s": round(tokens[0] / elapsed, 1),
            "ttft_ms_p50": ms(percentile(ttft, 50)), "ttft_ms_p99": ms(percentile(ttft, 99)),
            "itl_ms_p50": ms(percentile(itl, 50)), "itl_ms_p99": ms(percentile(itl, 99)),
            **({"first_error": errors[0]} if errors else {})}


def start_marlin(args):
    cmd = [args.marlin, "serve", "--host", "127.0.0.1", "--port", "0", "--max-batch", str(args.max_batch),
           "--max-queue", str(max(args.concurrency) + 8), "--ctx", str(args.ctx)]
    if args.model_path:
        cmd += ["--model", args.model_path]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"on http://127\.0\.0\.1:(\d+)", line or "")
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
    proc.kill()
    sys.exit(f"marlin serve did not start: {' '.join(cmd)}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="an already running server (loopback only); default: start marlin serve")
    p.add_argument("--model", default="", help="model id to send (default: none, the server's only model)")
    p.add_argument("--marlin", default=str(ROOT / "build" / "marlin"), help="marlin binary to start")
    p.add_argument("--model-path", default="", help="GGUF file for marlin serve (default: its default model)")
    p.add_argument("--threads", type=int, default=0, help="marlin serve -t")
    p.add_argument("--max-batch", type=int, default=32, help="marlin serve --max-batch")
    p.add_argument("--ctx", type=int, default=512, help="marlin serve --ctx")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=30, help="time per concurrency level (requests in flight finish)")
    p.add_argument("--max-requests", type=int, default=256, help="most requests per concurrency level")
    p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request")
    args = p.parse_args()

    proc = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("serve_load.py only talks to loopback servers")
        host, port = u.hostname, u.port or 80
    else:
        proc, port = start_marlin(args)
        host = "127.0.0.1"
    try:
        stream_one(host, port, args.model, "Hi", 4, timeout=120)  # warm up
        levels = [run_level(host, port, args.model, c, args.seconds, args.max_requests, args.max_tokens)
                  for c in args.concurrency]
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)
    print(json.dumps({"server": args.url or "marlin serve", "max_tokens": args.max_tokens, "levels": levels}, indent=1))


if __name__ == "__main__":
    main()
