"""marlin serve against the official openai client and raw HTTP: answers equal to `marlin run` at
temperature 0, streaming with usage, every error class, malformed HTTP and JSON, clients that
disconnect, a full queue, and SIGTERM under load."""
import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time

import openai
import pytest

from marlin_server import Server, assert_error, healthy, metric, raw_exchange, request, run_together

API_KEY = "test-key-123"
CONTEXT = 512
MAX_QUEUE = 2
MAX_BATCH = 2
MAX_BODY = 200_000
MODEL_ID = "SmolLM2-135M-Instruct.Q4_1"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def server(marlin_bin, default_model, tmp_path_factory):
    s = Server(marlin_bin, tmp_path_factory.mktemp("serve") / "serve.log", "--model", str(default_model),
               "--api-key", API_KEY, "--ctx", str(CONTEXT), "--max-queue", str(MAX_QUEUE), "--max-batch", str(MAX_BATCH),
               "--max-body", str(MAX_BODY), api_key=API_KEY)
    yield s
    s.stop()


def marlin_run(marlin_bin, *args):
    r = subprocess.run([str(marlin_bin), "run", "-t", "2", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def cli_answer(text):
    """What `marlin run` prints for an answer: the text, with a newline added when it has none."""
    return text if text.endswith("\n") else text + "\n"


# --- answers ---------------------------------------------------------------------------------

def test_chat_equals_marlin_run(server, marlin_bin):
    r = server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                temperature=0, max_tokens=24)
    text = r.choices[0].message.content
    assert "Paris" in text
    assert cli_answer(text) == marlin_run(marlin_bin, "--temperature", "0", "--max-tokens", "24", QUESTION)
    assert r.object == "chat.completion" and r.model == MODEL_ID and r.id.startswith("chatcmpl-")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_after_another_conversation_still_equals_marlin_run(server, marlin_bin):
    # The second request reuses the cached prefix (the template's system prompt) of the first.
    client = server.client()
    client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "Name a fruit."}],
                                   temperature=0, max_tokens=4)
    question = "Why is the sky blue?"
    r = client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": question}],
                                       temperature=0, max_tokens=20)
    assert r.usage.prompt_tokens_details.cached_tokens > 0
    assert cli_answer(r.choices[0].message.content) == marlin_run(marlin_bin, "--temperature", "0", "--max-tokens", "20", question)


def test_completion_equals_marlin_run_raw(server, marlin_bin):
    prompt = "The capital of France is"
    r = server.client().completions.create(model=MODEL_ID, prompt=prompt, temperature=0, max_tokens=8)
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8
    assert cli_answer(r.choices[0].text) == marlin_run(marlin_bin, "--raw", "--temperature", "0", "--max-tokens", "8", prompt)


def test_chat_streaming_with_usage(server):
    client = server.client()
    messages = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=16)
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=16,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_completion_streaming_ends_with_done(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0,
                                                               "stream": True}),
                 headers={"Authorization": f"Bearer {API_KEY}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    events = [e for e in resp.read().decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    bodies = [json.loads(e[len("data: "):]) for e in events[:-1]]
    assert all(b["object"] == "text_completion" and "usage" not in b for b in bodies)
    assert bodies[-1]["choices"][0]["finish_reason"] == "length"
    streamed = "".join(b["choices"][0]["text"] for b in bodies)
    whole = server.client().completions.create(model=MODEL_ID, prompt="Once upon a time", max_tokens=6, temperature=0)
    assert streamed == whole.choices[0].text


def test_prompt_forms_and_n(server):
    client = server.client()
    tokens = request(server, "POST", "/tokenize", {"prompt": "The capital of France is"})[2]["tokens"]
    by_text = client.completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=4, temperature=0)
    by_ids = client.completions.create(model=MODEL_ID, prompt=tokens, max_tokens=4, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    several = client.completions.create(model=MODEL_ID, prompt=["One, two,", "Red, green,"], n=2, max_tokens=3,
                                        temperature=1.0, seed=7)
    assert sorted(c.index for c in several.choices) == [0, 1, 2, 3]
    again = client.completions.create(model=MODEL_ID, prompt=["One, two,", "Red, green,"], n=2, max_tokens=3,
                                      temperature=1.0, seed=7)
    assert [c.text for c in several.choices] == [c.text for c in again.choices]  # a seed fixes the samples


def test_sampling_fields_are_honoured(server):
    client = server.client()
    messages = [{"role": "user", "content": QUESTION}]
    stopped = client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=24, stop=["Paris"])
    assert "Paris" not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"
    banned = request(server, "POST", "/tokenize", {"prompt": " Paris"})[2]["tokens"]
    biased = client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=24,
                                            logit_bias={str(t): -100 for t in banned})
    assert " Paris" not in biased.choices[0].message.content
    r = client.chat.completions.create(model=MODEL_ID, messages=messages, max_tokens=6, temperature=0.7, top_p=0.9,
                                       seed=3, presence_penalty=0.5, frequency_penalty=0.5, user="someone",
                                       extra_body={"top_k": 20, "min_p": 0.05, "an_unknown_field": 1})
    assert r.choices[0].message.content


def test_logprobs(server):
    r = server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                temperature=0, max_tokens=5, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert 0 < len(content) <= 5
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob)  # greedy takes the most likely token
        assert bytes(t.bytes).decode() == t.token
    legacy = server.client().completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=3,
                                                temperature=0, logprobs=2)
    lp = legacy.choices[0].logprobs
    assert len(lp.tokens) == 3 and len(lp.token_logprobs) == 3 and all(len(t) == 2 for t in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and "".join(lp.tokens) == legacy.choices[0].text


def test_content_parts(server):
    parts = [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]
    a = server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": parts}],
                                                temperature=0, max_tokens=10)
    b = server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                temperature=0, max_tokens=10)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_models_tokenize_detokenize(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL_ID]
    assert server.client().models.retrieve(MODEL_ID).id == MODEL_ID
    status, _, body = request(server, "POST", "/tokenize", {"prompt": "Hello world"})
    assert status == 200 and body["count"] == len(body["tokens"]) > 0 and body["max_model_len"] == CONTEXT
    status, _, back = request(server, "POST", "/detokenize", {"tokens": body["tokens"]})
    assert status == 200 and back["prompt"] == "Hello world"
    status, _, chat = request(server, "POST", "/tokenize", {"messages": [{"role": "user", "content": QUESTION}]})
    r = server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                temperature=0, max_tokens=1)
    assert chat["count"] == r.usage.prompt_tokens


# --- errors ----------------------------------------------------------------------------------

def test_401_without_a_valid_key_but_health_is_open(server):
    with pytest.raises(openai.AuthenticationError):
        server.client(key="wrong").models.list()
    status, headers, body = request(server, "GET", "/v1/models", key=None)
    assert_error(status, body, 401)
    assert request(server, "POST", "/v1/chat/completions", {"messages": []}, key="x")[0] == 401
    assert request(server, "GET", "/metrics", key=None)[0] == 401
    status, _, body = request(server, "GET", "/health", key=None)
    assert status == 200 and body == {"status": "ok"}


def test_404_for_unknown_models_and_routes(server):
    with pytest.raises(openai.NotFoundError) as e:
        server.client().chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        server.client().models.retrieve("gpt-9")
    assert_error(*request(server, "GET", "/v1/nothing")[::2], 404)
    assert_error(*request(server, "GET", "/v1/chat/completions")[::2], 404)


@pytest.mark.parametrize("body,param", [
    ({"prompt": ""}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [1, 2, 49152]}, "prompt"),
    ({"prompt": [-3]}, "prompt"),
    ({"prompt": "x", "n": -1}, "n"),
    ({"prompt": "x", "n": 1000}, "n"),
    ({"prompt": "x", "max_tokens": -5}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 10**15}, "max_tokens"),
    ({"prompt": "x", "top_k": -1}, "top_k"),
    ({"prompt": "x", "top_k": 10**9}, "top_k"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "stop": "s" * 1000}, "stop"),
    ({"prompt": "x", "logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"prompt": 5}, "prompt"),
])
def test_400_for_invalid_completions(server, body, param):
    status, _, payload = request(server, "POST", "/v1/completions", body)
    err = assert_error(status, payload, 400, param=param)
    assert err["type"] == "invalid_request_error"


def test_400_context_length_exceeded_names_both_counts(server):
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                max_tokens=CONTEXT)
    assert e.value.code == "context_length_exceeded"
    message = e.value.body["message"]
    assert str(CONTEXT) in message and re.search(r"\d+ tokens of prompt and %d to generate" % CONTEXT, message)
    long_prompt = "word " * (CONTEXT * 2)
    status, _, payload = request(server, "POST", "/v1/completions", {"prompt": long_prompt})
    assert_error(status, payload, 400, code="context_length_exceeded", param="prompt")


def test_400_for_malformed_json(server):
    for body in [b'{"messages": [', b"[1, 2, 3]", b'"text"', b"", b'{"prompt": "\xff\xfe"}', b"\xef\xbb\xbf{}garbage"]:
        status, _, payload = request(server, "POST", "/v1/completions", body, headers={"Content-Type": "application/json"})
        assert_error(status, payload, 400)
    assert healthy(server)


def test_413_for_a_body_too_large(server):
    status, _, payload = request(server, "POST", "/v1/completions", {"prompt": "x" * (MAX_BODY + 10)})
    assert_error(status, payload, 413)
    assert healthy(server)


def test_malformed_http(server):
    auth = f"Authorization: Bearer {API_KEY}\r\n".encode()
    # A body shorter than its Content-Length (the client gives up sending).
    truncated = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 100\r\n\r\n{\"prompt\": \"hi"
    assert raw_exchange(server, truncated, shutdown_write=True) in (400, None)
    # A header line far past the limit.
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    assert raw_exchange(server, huge) in (400, 413, 431, None)
    # A request line that is not HTTP, and a URI past the limit.
    assert raw_exchange(server, b"HELLO\r\n\r\n", shutdown_write=True) in (400, None)
    assert raw_exchange(server, b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n") in (400, 414, None)
    assert healthy(server)


def test_full_queue_is_503_and_clients_that_leave_are_cancelled(server):
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me a very long story about dragons."}],
                       "max_tokens": 400, "temperature": 0, "stream": True})
    streams = []

    def open_stream():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Authorization": f"Bearer {API_KEY}"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read(6) == b"data: "  # the role chunk arrives at once
        streams.append(conn)

    for _ in range(MAX_BATCH):  # a full batch running...
        open_stream()
    deadline = time.time() + 30
    while gauges(server) != (0, MAX_BATCH) and time.time() < deadline:
        time.sleep(0.02)
    for _ in range(MAX_QUEUE):  # ...and a full queue
        open_stream()
    tokens_before = generated_tokens(server)
    status, headers, payload = request(server, "POST", "/v1/chat/completions",
                                       {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert_error(status, payload, 503, code="queue_full")
    assert int(headers["Retry-After"]) > 0
    for conn in streams:  # every client leaves mid-stream
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
    # Their requests are cancelled: the server goes idle long before 4 x 400 tokens could be made.
    deadline = time.time() + 15
    while time.time() < deadline and gauges(server) != (0, 0):
        time.sleep(0.1)
    assert gauges(server) == (0, 0)
    start = time.time()
    r = server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                temperature=0, max_tokens=8)
    assert "Paris" in r.choices[0].message.content
    assert time.time() - start < 20
    # The abandoned streams stopped early instead of generating their 4 x 400 tokens.
    assert generated_tokens(server) - tokens_before < 400


def gauges(server):
    text = request(server, "GET", "/metrics")[2]
    return tuple(int(re.search(rf"^{name} (\d+)$", text, re.M).group(1))
                 for name in ("marlin_queue_depth", "marlin_running_sequences"))


# A plain (non-streaming) answer is held for up to 2 s before the server turns to a chunked one whose
# heartbeats notice a departed client, so "long" must mean well beyond that on any machine: 4,000
# tokens take about 11 s on a 2-core VM (at 512 they had taken 1.3 s there and the answer was
# complete before the client could be missed).
LONG_CONTEXT = 4096


@pytest.fixture(scope="module")
def long_server(marlin_bin, default_model, tmp_path_factory):
    s = Server(marlin_bin, tmp_path_factory.mktemp("long") / "serve.log", "--model", str(default_model),
               "--api-key", API_KEY, "--ctx", str(LONG_CONTEXT), "--max-batch", "1", api_key=API_KEY)
    yield s
    s.stop()


def test_a_client_that_leaves_a_long_plain_request_cancels_it(long_server):
    server = long_server
    end_tokens = [request(server, "POST", "/tokenize", {"prompt": t})[2]["tokens"][0] for t in ("<|im_end|>", "<|endoftext|>")]
    max_tokens = LONG_CONTEXT - 64
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": max_tokens,
                       "temperature": 0, "logit_bias": {str(t): -100 for t in end_tokens}}).encode()
    tokens_before = generated_tokens(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() +
                     b"\r\nAccept-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.time() + 30
        while gauges(server)[1] == 0 and time.time() < deadline:  # until it runs
            time.sleep(0.05)
        time.sleep(0.5)
    deadline = time.time() + 10
    while time.time() < deadline and gauges(server) != (0, 0):
        time.sleep(0.1)
    assert gauges(server) == (0, 0)
    assert generated_tokens(server) - tokens_before < max_tokens


def generated_tokens(server):
    text = request(server, "GET", "/metrics")[2]
    return int(re.search(r"^marlin_generation_tokens_total (\d+)$", text, re.M).group(1))


def test_metrics(server):
    status, headers, text = request(server, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert re.search(r'^marlin_requests_total\{endpoint="/v1/chat/completions",status="200"\} \d+$', text, re.M)
    assert re.search(r'^marlin_requests_total\{endpoint="/v1/completions",status="400"\} \d+$', text, re.M)
    for name in ["marlin_prompt_tokens_total", "marlin_generation_tokens_total", "marlin_queue_depth",
                 "marlin_running_sequences", "marlin_time_to_first_token_seconds_count",
                 "marlin_inter_token_latency_seconds_count"]:
        assert re.search(rf"^{name} \d+", text, re.M), name
    assert re.search(r'^marlin_inter_token_latency_seconds_bucket\{le="\+Inf"\} [1-9]\d*$', text, re.M)


def test_one_log_line_per_request(server):
    r = server.client().completions.create(model=MODEL_ID, prompt="Hello", max_tokens=3, temperature=0)
    time.sleep(0.2)
    lines = [l for l in server.log_path.read_text().splitlines() if l.startswith(r.id)]
    assert len(lines) == 1 and re.search(r" 200 in=\d+ out=3 \d+\.\d+s$", lines[0]), lines


# --- continuous batching ---------------------------------------------------------------------

BATCH_QUESTIONS = ["What is the capital of France?", "Name three fruits.", "Write a haiku about the sea.",
                   "Say hello.", "What is two plus two?", "Name a color.", "Who wrote Hamlet?",
                   "Count from one to five."]


@pytest.fixture(scope="module")
def batch_server(marlin_bin, default_model, tmp_path_factory):
    s = Server(marlin_bin, tmp_path_factory.mktemp("batch") / "serve.log", "--model", str(default_model),
               "--api-key", API_KEY, "--ctx", str(CONTEXT), "--max-batch", "8", "--max-queue", "8", api_key=API_KEY)
    yield s
    s.stop()


def test_concurrent_streams_each_equal_their_run_alone(batch_server):
    def ask(question, stream):
        r = batch_server.client().chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=24,
            stream=stream)
        if not stream:
            return r.choices[0].message.content
        return "".join(c.choices[0].delta.content or "" for c in r if c.choices)

    alone = [ask(q, False) for q in BATCH_QUESTIONS]
    together, most_running = run_together(batch_server, lambda i: ask(BATCH_QUESTIONS[i], True),
                                           len(BATCH_QUESTIONS))
    assert together == alone
    assert most_running > 1  # they did run together


def test_a_disconnect_mid_stream_frees_its_kv_blocks(batch_server):
    body = json.dumps({"messages": [{"role": "user", "content": "Tell me a very long story about dragons."}],
                       "max_tokens": 400, "temperature": 0, "stream": True})
    conn = http.client.HTTPConnection("127.0.0.1", batch_server.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Authorization": f"Bearer {API_KEY}"})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read(6)
    contents = 0
    while contents < 3:  # until tokens flow
        contents += b"content" in resp.readline()
    assert metric(batch_server, "marlin_kv_blocks_used") > 0
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    r = batch_server.client().chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": QUESTION}],
                                                      temperature=0, max_tokens=8)
    assert "Paris" in r.choices[0].message.content
    deadline = time.time() + 10
    while time.time() < deadline and metric(batch_server, "marlin_kv_blocks_used") != 0:
        time.sleep(0.05)
    assert metric(batch_server, "marlin_kv_blocks_used") == 0
    assert metric(batch_server, "marlin_running_sequences") == 0
    total = metric(batch_server, "marlin_kv_blocks_total")
    assert total == 8 * CONTEXT // 16  # --max-batch x --ctx in blocks of 16 by default
    assert metric(batch_server, "marlin_kv_blocks_free") + metric(batch_server, "marlin_kv_blocks_cached") == total


def test_a_common_prompt_prefix_shares_kv_blocks(batch_server):
    # A long system prompt; the second request comes while the first streams, maps the first's
    # prefix blocks (usage reports them as cached prompt tokens) and answers as it would alone.
    system = ("You answer questions about a small museum of clocks. " * 16).strip()
    long_story = [{"role": "system", "content": system}, {"role": "user", "content": "Tell me a long story."}]
    question = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]
    client = batch_server.client()
    alone = client.chat.completions.create(model=MODEL_ID, messages=question, temperature=0, max_tokens=8)
    prompt_blocks = -(-alone.usage.prompt_tokens // 16)
    stream = client.chat.completions.create(model=MODEL_ID, messages=long_story, temperature=0, max_tokens=300,
                                            stream=True)
    next(iter(stream))  # its prompt is in the cache
    used_while_both = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            if metric(batch_server, "marlin_running_sequences") == 2:
                used_while_both.append(metric(batch_server, "marlin_kv_blocks_used"))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    shared = client.chat.completions.create(model=MODEL_ID, messages=question, temperature=0, max_tokens=8)
    done.set()
    watcher.join()
    stream.close()
    assert shared.choices[0].message.content == alone.choices[0].message.content
    assert shared.usage.prompt_tokens_details.cached_tokens >= 16 * 8
    assert used_while_both, "never saw both requests running"
    assert min(used_while_both) < 2 * prompt_blocks
    deadline = time.time() + 10
    while time.time() < deadline and metric(batch_server, "marlin_kv_blocks_used") != 0:
        time.sleep(0.05)
    assert metric(batch_server, "marlin_kv_blocks_used") == 0
    assert metric(batch_server, "marlin_kv_blocks_cached") > 0


def test_a_small_kv_pool_bounds_the_context(marlin_bin, default_model, tmp_path):
    # 6 blocks of 16 positions: one request holds at most 96 positions; two such requests take
    # turns (admission reserves prompt + max_tokens), and everything returns to the pool.
    s = Server(marlin_bin, tmp_path / "serve.log", "--model", str(default_model), "--ctx", str(CONTEXT),
               "--max-batch", "4", "--kv-blocks", "6", "--block-size", "16")
    try:
        client = s.client()
        assert request(s, "GET", "/v1/models")[2]["data"][0]["max_model_len"] == 96
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=MODEL_ID, prompt="Once upon a time", max_tokens=100)
        assert e.value.code == "context_length_exceeded"
        results = [None, None]

        def ask(i):
            results[i] = client.completions.create(model=MODEL_ID, prompt=["Once upon a time", "The sea is"][i],
                                                   max_tokens=40, temperature=0)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.usage.completion_tokens > 0 for r in results)
        assert metric(s, "marlin_kv_blocks_used") == 0
        assert metric(s, "marlin_kv_blocks_total") == 6
    finally:
        s.stop()


# --- shutdown --------------------------------------------------------------------------------

def test_sigterm_under_load_finishes_streams_and_exits_0(marlin_bin, default_model, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    s = Server(marlin_bin, tmp_path / "serve.log", "--model", str(default_model), "--ctx", "256", "--shutdown-timeout", "30",
               "--api-key-file", str(key_file), api_key=API_KEY)
    results, errors = [], []
    started = threading.Semaphore(0)

    def stream(i):
        try:
            chunks = s.client().chat.completions.create(model=MODEL_ID, temperature=0, max_tokens=24, stream=True,
                                                        messages=[{"role": "user", "content": f"Count to {i + 5}."}])
            finishes = []
            for n, c in enumerate(chunks):
                if n == 0:
                    started.release()  # the role chunk arrived: this request is in flight
                if c.choices and c.choices[0].finish_reason:
                    finishes.append(c.choices[0].finish_reason)
            results.append(finishes)
        except Exception as e:  # reported by the assertion below
            errors.append(repr(e))
            started.release()

    try:
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for _ in threads:
            assert started.acquire(timeout=60)
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=60) == 0
        for t in threads:
            t.join(timeout=30)
        assert not errors and len(results) == 3 and all(r in (["stop"], ["length"]) for r in results), (errors, results)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    finally:
        s.stop()
