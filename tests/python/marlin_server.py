"""A live `marlin serve` for the server tests, and small HTTP helpers shared by them."""
import http.client
import json
import re
import socket
import subprocess
import threading
import time

import openai
import pytest


class Server:
    """`marlin serve --port 0` with the given arguments; its stderr goes to `log_path`."""

    def __init__(self, marlin_bin, log_path, *args, api_key=None):
        self.log_path = log_path
        self.api_key = api_key
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(marlin_bin), "serve", "--port", "0", "-t", "2", *args],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", log_path.read_text())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"marlin serve did not start: {log_path.read_text()}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self, key=None, timeout=60):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key or self.api_key or "none",
                             max_retries=0, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


SERVER_KEY = object()


def request(server, method, path, body=None, headers=None, key=SERVER_KEY, timeout=60):
    """(status, headers, parsed JSON or text) of one HTTP request; `key` defaults to the server's
    (None: no Authorization header)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    if key is SERVER_KEY:
        key = server.api_key
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    conn.close()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = text
    return resp.status, dict(resp.getheaders()), payload


def raw_response(server, data, shutdown_write=False, timeout=10):
    """Sends raw bytes; returns (status, JSON body or None) of the answer; status None when the
    server closed the connection without one."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                head, sep, body = received.partition(b"\r\n\r\n")
                m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
                if sep and m and len(body) >= int(m.group(1)):
                    break
        except (ConnectionResetError, BrokenPipeError):
            pass
    m = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    if not m:
        return None, None
    body = received.partition(b"\r\n\r\n")[2]
    try:
        return int(m.group(1)), json.loads(body)
    except ValueError:
        return int(m.group(1)), None


def raw_exchange(server, data, shutdown_write=False, timeout=10):
    """The status code of the answer to raw bytes (None when the server just closed)."""
    return raw_response(server, data, shutdown_write, timeout)[0]


def assert_error(status, payload, expected_status, code=None, param=None):
    assert status == expected_status, payload
    err = payload["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def metric(server, name):
    """The value of an unlabelled counter or gauge on /metrics."""
    text = request(server, "GET", "/metrics")[2]
    return int(re.search(rf"^{name} (\d+)$", text, re.M).group(1))


def healthy(server):
    return request(server, "GET", "/health", key=None)[0] == 200


def run_together(server, work, count):
    """work(i) for i in range(count), on threads released at once; returns the results by i and the
    most sequences /metrics showed running meanwhile. A worker's exception fails the caller."""
    results, errors = [None] * count, []
    barrier = threading.Barrier(count)

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as e:  # reported by the assertion below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    most_running = 0
    while any(t.is_alive() for t in threads):
        most_running = max(most_running, metric(server, "marlin_running_sequences"))
        time.sleep(0.02)
    assert not errors, errors
    return results, most_running
