"""marlin serve under load and abuse: 32 concurrent streams each equal to its run alone (in a batch
of 32 while a slow client trickles a request, and through a batch of 8 with a queue), 100 clients
that disconnect early, SIGTERM under load, and malformed HTTP and JSON over raw sockets (truncated
bodies, non-object JSON, huge headers, invalid UTF-8, garbage, bad chunking)."""
import http.client
import json
import random
import select
import signal
import socket
import threading
import time

import pytest

from marlin_server import Server, assert_error, healthy, metric, raw_response, request, run_together

MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"
CONTEXT = 256
MAX_TOKENS = 16
MAX_BODY = 100_000
QUESTIONS = [f"{verb} {thing}." for verb in ("Name", "Describe", "Define", "Spell")
             for thing in ("a fruit", "a color", "an animal", "a planet", "a tree", "a river", "a city", "a tool")]
assert len(set(QUESTIONS)) == 32


def serve(marlin_bin, default_model, log_path, *args):
    return Server(marlin_bin, log_path, "--model", str(default_model), "--ctx", str(CONTEXT), "--max-body",
                  str(MAX_BODY), *args)


@pytest.fixture(scope="module")
def wide_server(marlin_bin, default_model, tmp_path_factory):
    """32 sequences at once; room in the queue for 100 clients."""
    s = serve(marlin_bin, default_model, tmp_path_factory.mktemp("wide") / "serve.log", "--max-batch", "32",
              "--max-queue", "128")
    yield s
    s.stop()


def ask(server, question, timeout=120):
    """The streamed answer at temperature 0."""
    chunks = server.client(timeout=timeout).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=MAX_TOKENS,
        stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def ask_all_at_once(server):
    """Every question streamed concurrently; returns the answers and the most sequences seen
    running together."""
    return run_together(server, lambda i: ask(server, QUESTIONS[i]), len(QUESTIONS))


def assert_idle(server, timeout=10):
    """Nothing queued or running and no KV blocks held by a sequence, within `timeout` seconds."""
    names = ("marlin_queue_depth", "marlin_running_sequences", "marlin_kv_blocks_used")
    deadline = time.time() + timeout
    while time.time() < deadline and any(metric(server, n) for n in names):
        time.sleep(0.05)
    assert {n: metric(server, n) for n in names} == dict.fromkeys(names, 0)


@pytest.fixture(scope="module")
def alone(wide_server):
    """Each question's answer with nothing else running."""
    return [ask(wide_server, q) for q in QUESTIONS]


# --- 32 concurrent streams -------------------------------------------------------------------

def start_trickling(server):
    """A client that sends a request one byte a second, in a thread; returns the thread and a dict
    that gets the server's reply and the seconds until it came."""
    data = (b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 19\r\n\r\n"
            b'{"prompt": "hello"}')
    outcome = {}

    def trickle():
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            started = time.time()
            for i in range(len(data)):  # until the server answers or closes
                try:
                    sock.sendall(data[i:i + 1])
                except OSError:
                    break
                if select.select([sock], [], [], 1.0)[0]:
                    break
            try:
                outcome["reply"] = sock.recv(4096)
            except OSError as e:
                outcome["reply"] = repr(e)
            outcome["seconds"] = time.time() - started

    slow = threading.Thread(target=trickle)
    slow.start()
    return slow, outcome


def test_32_concurrent_streams_equal_their_runs_alone_while_a_slow_client_trickles(wide_server, alone):
    assert all(alone) and len(set(alone)) > 16  # real, mostly different answers
    slow, outcome = start_trickling(wide_server)
    time.sleep(1.5)
    start = time.time()
    r = wide_server.client(timeout=20).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Say hi."}], temperature=0, max_tokens=4)
    assert r.choices[0].message.content and time.time() - start < 10
    assert slow.is_alive()  # the slow client did not hold the request up

    together, most_running = ask_all_at_once(wide_server)
    assert together == alone
    assert most_running > 8  # they did run together
    assert_idle(wide_server)

    # The slow client's headers did not arrive within the server's 10 s: it answered 408 and closed.
    slow.join(timeout=30)
    assert outcome["reply"].startswith(b"HTTP/1.1 408"), outcome
    assert 9 < outcome["seconds"] < 15, outcome
    assert healthy(wide_server)


def test_32_streams_through_a_batch_of_8_equal_their_runs_alone(marlin_bin, default_model, tmp_path, alone):
    s = serve(marlin_bin, default_model, tmp_path / "serve.log")  # the default --max-batch 8: 24 wait
    try:
        together, most_running = ask_all_at_once(s)
        assert together == alone  # whatever batch they ran in, on whichever server
        assert 1 < most_running <= 8
        assert_idle(s)
    finally:
        s.stop()


# --- clients that leave ----------------------------------------------------------------------

def streaming_request(question, max_tokens):
    body = json.dumps({"model": MODEL_ID, "messages": [{"role": "user", "content": question}], "temperature": 0,
                       "max_tokens": max_tokens, "stream": True}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def test_100_clients_that_disconnect_early_are_cancelled(wide_server):
    generated_before = metric(wide_server, "marlin_generation_tokens_total")
    max_tokens = 200
    rng = random.Random(5)
    plans = [("at once", "first chunk", "after a while")[i % 3] for i in range(100)]
    waits = [rng.uniform(0.005, 0.3) for _ in plans]
    errors = []

    def client(i):
        try:
            sock = socket.create_connection(("127.0.0.1", wide_server.port), timeout=30)
            with sock:
                sock.sendall(streaming_request(QUESTIONS[i % len(QUESTIONS)] + f" ({i})", max_tokens))
                if plans[i] == "first chunk":
                    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
                elif plans[i] == "after a while":
                    time.sleep(waits[i])
                if i % 2:  # half of them reset the connection instead of closing it
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except Exception as e:  # reported by the assertion below
            errors.append(f"{i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    start = time.time()
    r = wide_server.client(timeout=10).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0,
        max_tokens=8)
    assert "Paris" in r.choices[0].message.content
    assert time.time() - start < 10
    assert_idle(wide_server)
    # Every block is free again or kept only for prefix reuse.
    assert metric(wide_server, "marlin_kv_blocks_free") + metric(wide_server, "marlin_kv_blocks_cached") == metric(
        wide_server, "marlin_kv_blocks_total")
    # They stopped early rather than generating their 100 x 200 tokens.
    assert metric(wide_server, "marlin_generation_tokens_total") - generated_before < 100 * max_tokens // 4
    assert healthy(wide_server)


# --- shutdown --------------------------------------------------------------------------------

def test_sigterm_under_load_finishes_or_cancels_streams_then_exits_0(marlin_bin, default_model, tmp_path):
    shutdown_timeout = 4
    s = Server(marlin_bin, tmp_path / "serve.log", "--model", str(default_model), "--ctx", "2048", "--max-batch", "4",
               "--shutdown-timeout", str(shutdown_timeout))
    # Two end within the timeout; two cannot: the end of turn is banned and 1,800 tokens take far
    # longer than 4 s (a quiet 2-core machine decodes this model at ~150 tok/s per sequence; 200
    # tokens finished in time there).
    max_tokens = [3, 3, 1800, 1800]
    results, errors, end_tokens = {}, [], []
    started = threading.Semaphore(0)

    def stream(i):
        try:
            chunks = s.client().chat.completions.create(
                model=MODEL_ID, temperature=0, max_tokens=max_tokens[i], stream=True,
                logit_bias={str(t): -100 for t in end_tokens} if max_tokens[i] > 3 else None,
                messages=[{"role": "user", "content": f"Write a long story about dragon number {i}."}])
            finishes, text = [], ""
            for c in chunks:
                if c.choices:
                    if not text and c.choices[0].delta.content:
                        started.release()  # tokens flow: this request is in flight
                    text += c.choices[0].delta.content or ""
                    if c.choices[0].finish_reason:
                        finishes.append(c.choices[0].finish_reason)
            results[i] = (finishes, text)
        except Exception as e:  # reported by the assertion below
            errors.append(repr(e))
            started.release()

    try:
        end_tokens.extend(request(s, "POST", "/tokenize", {"prompt": t})[2]["tokens"][0]
                          for t in ("<|im_end|>", "<|endoftext|>"))
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(max_tokens))]
        for t in threads:
            t.start()
        for _ in threads:
            assert started.acquire(timeout=60)
        signalled = time.time()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):  # no new connections while the streams finish
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
        assert s.proc.wait(timeout=shutdown_timeout + 10) == 0
        assert time.time() - signalled < shutdown_timeout + 5
        for t in threads:
            t.join(timeout=30)
        assert not errors and len(results) == len(max_tokens), (errors, results)
        for i in (0, 1):
            assert results[i][0] in (["stop"], ["length"]), results
        for i in (2, 3):
            assert results[i][0] == ["cancelled"] and results[i][1], results
    finally:
        s.stop()


# --- malformed HTTP and JSON -----------------------------------------------------------------

def post(path, body, extra_headers=b""):
    return (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra_headers +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def assert_raw_error(server, data, status, code=None, shutdown_write=False):
    got, payload = raw_response(server, data, shutdown_write=shutdown_write)
    assert got == status, (got, payload)
    assert_error(got, payload, status, code=code)
    assert healthy(server)


def test_truncated_bodies(wide_server):
    head = b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    # The client stops sending and half-closes: the answer still reaches it.
    assert_raw_error(wide_server, head + b'{"prompt": "hi', 400, code="truncated_body", shutdown_write=True)
    # The client leaves altogether.
    with socket.create_connection(("127.0.0.1", wide_server.port)) as sock:
        sock.sendall(head + b'{"prompt"')
    assert healthy(wide_server)


@pytest.mark.parametrize("body", [b"[1, 2]", b"42", b'"a string"', b"null", b"true", b"[]"])
def test_json_that_is_not_an_object_is_400(wide_server, body):
    for path in ("/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"):
        assert_raw_error(wide_server, post(path, body), 400)


@pytest.mark.parametrize("body", [
    b'{"prompt": "caf\xe9"}',  # Latin-1, not UTF-8
    b'{"prompt": "\xc3"}',  # a character cut short
    b'{"prompt": "\xed\xa0\x80"}',  # a UTF-16 surrogate
    b'{"messages": [{"role": "user", "content": "\xff\xfe hello"}]}',
    b'{"prompt": "ok", "stop": ["\xc0\xaf"]}',  # an overlong encoding
])
def test_invalid_utf8_in_json_strings_is_400(wide_server, body):
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    assert_raw_error(wide_server, post(path, body), 400)


def test_deeply_nested_json_is_400(wide_server):
    depth = MAX_BODY // 2 - 20
    assert_raw_error(wide_server, post("/v1/completions", b'{"prompt": ' + b"[" * depth + b"]" * depth + b"}"), 400)
    assert_raw_error(wide_server, post("/v1/completions", b'{"x": ' + b"[" * (MAX_BODY - 10)), 400)


def test_huge_headers_are_431(wide_server):
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    assert_raw_error(wide_server, big, 431, code="headers_too_large")
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H-%d: v\r\n" % i for i in range(10_000)) + b"\r\n"
    assert_raw_error(wide_server, many, 431, code="headers_too_large")
    # Fewer bytes than the budget, but more header lines than allowed.
    counted = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n"
    assert_raw_error(wide_server, counted, 431, code="headers_too_large")
    # A request line with no end.
    assert raw_response(wide_server, b"GET /" + b"a" * (1 << 20))[0] in (None, 414, 431)
    assert healthy(wide_server)


def test_garbage_and_bad_framing(wide_server):
    for garbage in (b"\x00\x01\x02garbage\r\n\r\n", b"GET\r\n\r\n", b"HELLO WORLD HTTP/9.9\r\n\r\n", b"\r\n\r\n\r\n"):
        assert raw_response(wide_server, garbage, shutdown_write=True)[0] in (None, 400)
        assert healthy(wide_server)
    chunked = b"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert_raw_error(wide_server, chunked + b"zz\r\nabc\r\n0\r\n\r\n", 400, shutdown_write=True)
    assert_raw_error(wide_server, chunked + b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400, shutdown_write=True)
    # Well-formed chunks are read; too many bytes of them are 413.
    body = b'{"prompt": "Hello world"}'
    status, payload = raw_response(wide_server, chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert status == 200 and payload["count"] > 0
    huge = b"".join(b"1000\r\n" + b"a" * 0x1000 + b"\r\n" for _ in range(2 * MAX_BODY // 0x1000 + 20))
    assert_raw_error(wide_server, chunked + huge + b"0\r\n\r\n", 413, code="request_too_large")
    over = b"".join(b"1000\r\n" + b"a" * 0x1000 + b"\r\n" for _ in range(MAX_BODY // 0x1000 + 2))
    assert_raw_error(wide_server, chunked + over + b"0\r\n\r\n", 413, code="request_too_large")
    # Bodies the server will not read: no length, a compressed body, two lengths.
    assert_raw_error(wide_server, b"POST /tokenize HTTP/1.1\r\nHost: x\r\n\r\n{}", 411, code="length_required")
    assert_raw_error(wide_server, post("/tokenize", b"\x1f\x8b\x08\x00", b"Content-Encoding: gzip\r\n"), 415)
    assert_raw_error(wide_server, post("/tokenize", b"{}", b"Content-Length: 2\r\n"), 400)
    assert_raw_error(wide_server, post("/tokenize", b'{"prompt": "x"}', b"Transfer-Encoding: gzip\r\n"), 400)


def test_a_refused_body_does_not_leak_into_the_next_request(wide_server):
    # The server answers before reading the body, then closes: on a kept-alive connection the body
    # must not be read as the next request.
    conn = http.client.HTTPConnection("127.0.0.1", wide_server.port, timeout=10)
    conn.request("POST", "/tokenize", body=b"GET /metrics HTTP/1.1\r\n\r\n" * 4,
                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 415 and resp.getheader("Connection") == "close"
    resp.read()
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
    conn.close()
