"""The chat page of `marlin serve` (GET /) in headless Chromium, driven by selenium: it is served
without the API key, its streamed answers equal the API's at temperature 0, each turn sends the
conversation so far, Stop cancels the request on the server, and the server's errors show in the
page (as text: nothing the page shows is parsed as HTML)."""
import json
import re
import shutil
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from marlin_server import Server

API_KEY = "page-key-456"
CONTEXT = 1024
QUESTION = "What is the capital of France?"
FOLLOW_UP = "And what is the capital of Germany?"
ANSWER_TOKENS = 16
WAIT_SECONDS = 60

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(marlin_bin, default_model, tmp_path_factory):
    s = Server(marlin_bin, tmp_path_factory.mktemp("chat_page") / "serve.log", "--model", str(default_model),
               "--api-key", API_KEY, "--ctx", str(CONTEXT), api_key=API_KEY)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs the Debian packages chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def page(server, browser):
    """The page, freshly loaded with empty storage, the right API key and temperature 0."""
    browser.get(server.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "toggle-settings").click()
    set_field(browser, "api-key", API_KEY)
    set_field(browser, "temperature", "0")
    set_field(browser, "max-tokens", str(ANSWER_TOKENS))
    return browser


def set_field(driver, field_id, value):
    field = driver.find_element(By.ID, field_id)
    field.clear()
    field.send_keys(value)
    field.send_keys(Keys.TAB)  # leaving the field fires its change event


def api(server, method, path, body=None, key=API_KEY):
    """(status, headers, body: parsed JSON, or text) of one request to the server."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=WAIT_SECONDS) as r:
            status, headers, text = r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        status, headers, text = e.code, e.headers, e.read().decode()
    try:
        return status, headers, json.loads(text)
    except ValueError:
        return status, headers, text


def api_chat(server, messages, **fields):
    status, _, body = api(server, "POST", "/v1/chat/completions", {"messages": messages, "temperature": 0, **fields})
    assert status == 200, body
    return body


def metric(server, name):
    text = api(server, "GET", "/metrics")[2]
    return int(float(re.search(rf"^{name} (\S+)$", text, re.M).group(1)))


def type_and_send(driver, text):
    driver.find_element(By.ID, "input").send_keys(text, Keys.ENTER)


def messages(driver, role):
    return driver.find_elements(By.CSS_SELECTOR, f"#messages .{role}")


def part(element, css):
    return element.find_element(By.CSS_SELECTOR, css).get_attribute("textContent")


def wait_for_answer(driver, count):
    """The state, text and note of the count-th answer once it is no longer streaming."""
    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda d: len(messages(d, "assistant")) >= count and
        messages(d, "assistant")[count - 1].get_attribute("data-state") != "streaming")
    answer = messages(driver, "assistant")[count - 1]
    return answer.get_attribute("data-state"), part(answer, ".text"), part(answer, ".meta")


def count_text_updates(driver):
    """From now on, window.textUpdates counts the changes of answer texts (one per streamed piece)."""
    driver.execute_script("""
        window.textUpdates = 0;
        new MutationObserver((records) => {
          for (const r of records) if (r.target.classList?.contains("text")) window.textUpdates++;
        }).observe(document.getElementById("messages"), {childList: true, subtree: true, characterData: true});
    """)


def test_the_page_is_served_without_the_key_and_the_api_still_needs_it(server):
    status, headers, body = api(server, "GET", "/", key=None)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for element in ('id="messages"', 'id="input"', 'id="send"', 'id="stop"', 'id="new-chat"', 'id="api-key"'):
        assert element in body
    assert "http://" not in body and "https://" not in body  # nothing is loaded from elsewhere
    assert "innerHTML" not in body  # text reaches the page as text only
    assert api(server, "GET", "/v1/models", key=None)[0] == 401


def test_streamed_answers_equal_the_api_and_carry_the_conversation(page, server):
    WebDriverWait(page, WAIT_SECONDS).until(lambda d: d.find_element(By.ID, "model").text)
    assert page.find_element(By.ID, "model").text == "SmolLM2-135M-Instruct.Q4_1"
    count_text_updates(page)
    type_and_send(page, QUESTION)
    state, first, note = wait_for_answer(page, 1)
    assert state == "done", note
    expected = api_chat(server, [{"role": "user", "content": QUESTION}], max_tokens=ANSWER_TOKENS)
    assert first and first == expected["choices"][0]["message"]["content"]
    assert "Paris" in first
    assert page.execute_script("return window.textUpdates") > 1  # it arrived in pieces
    usage = expected["usage"]
    assert note.startswith(f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} answer tokens")

    # The second turn sends the first question and answer too: the same history through the API
    # gives the same answer, and the server counted the same (longer) prompt.
    prompt_tokens_before = metric(server, "marlin_prompt_tokens_total")
    type_and_send(page, FOLLOW_UP)
    state, second, note = wait_for_answer(page, 2)
    assert state == "done", note
    prompt_tokens = metric(server, "marlin_prompt_tokens_total") - prompt_tokens_before
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": first},
               {"role": "user", "content": FOLLOW_UP}]
    expected = api_chat(server, history, max_tokens=ANSWER_TOKENS)
    assert second and second == expected["choices"][0]["message"]["content"]
    assert prompt_tokens == expected["usage"]["prompt_tokens"] > usage["prompt_tokens"] + usage["completion_tokens"]

    # A new chat starts from nothing: the question alone makes the first prompt again.
    page.find_element(By.ID, "new-chat").click()
    assert not messages(page, "message")
    set_field(page, "max-tokens", "1")
    type_and_send(page, QUESTION)
    state, _, note = wait_for_answer(page, 1)
    assert state == "done" and note.startswith(f"{usage['prompt_tokens']} prompt + 1 answer tokens"), note


def test_stop_ends_the_answer_and_the_server_cancels_it(page, server):
    set_field(page, "max-tokens", str(CONTEXT - 100))
    generated_before = metric(server, "marlin_generation_tokens_total")
    type_and_send(page, "Write a very long story about a dragon who learns to bake bread.")
    WebDriverWait(page, WAIT_SECONDS).until(
        lambda d: messages(d, "assistant") and part(messages(d, "assistant")[0], ".text"))
    assert metric(server, "marlin_running_sequences") == 1
    page.find_element(By.ID, "stop").click()
    state, stopped_text, note = wait_for_answer(page, 1)
    assert (state, note) == ("stopped", "stopped") and stopped_text
    assert page.find_element(By.ID, "send").is_enabled() and not page.find_element(By.ID, "stop").is_enabled()

    deadline = time.time() + 5
    while time.time() < deadline and metric(server, "marlin_running_sequences") != 0:
        time.sleep(0.1)
    assert metric(server, "marlin_running_sequences") == 0
    assert metric(server, "marlin_generation_tokens_total") - generated_before < CONTEXT - 100
    time.sleep(0.5)
    assert part(messages(page, "assistant")[0], ".text") == stopped_text  # nothing arrives after Stop
    log = server.log_path.read_text().splitlines()
    assert any("POST /v1/chat/completions 200" in line and "client-left" in line for line in log), log[-5:]


def test_server_errors_show_in_the_page_as_text(page, server):
    markup = '<img src=x onerror="document.title=1">\n<b>bold?</b>'
    set_field(page, "api-key", "wrong-key")
    page.find_element(By.ID, "toggle-settings").click()  # closed: a 401 opens it at the key
    assert not page.find_element(By.ID, "api-key").is_displayed()
    # Shift+Enter starts a new line, Enter sends.
    box = page.find_element(By.ID, "input")
    first_line, second_line = markup.split("\n")
    box.send_keys(first_line, Keys.SHIFT, Keys.ENTER)
    box.send_keys(second_line)
    assert box.get_attribute("value") == markup and not messages(page, "user")
    box.send_keys(Keys.ENTER)
    state, _, note = wait_for_answer(page, 1)
    status, _, body = api(server, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": markup}]},
                          key="wrong-key")
    assert status == 401 and state == "error" and note == body["error"]["message"]
    # The message is shown as typed, not as HTML; the failed turn is withdrawn and its text
    # returned to the input.
    assert part(messages(page, "user")[0], ".text") == markup
    assert not page.find_elements(By.CSS_SELECTOR, "#messages img, #messages b")
    assert page.find_element(By.ID, "input").get_attribute("value") == markup
    assert "withdrawn" in messages(page, "user")[0].get_attribute("class")
    assert page.find_element(By.ID, "api-key").is_displayed()

    # A validation error (prompt + max_tokens over the context) shows the server's message.
    set_field(page, "api-key", API_KEY)
    set_field(page, "max-tokens", str(CONTEXT))
    page.find_element(By.ID, "input").clear()
    type_and_send(page, QUESTION)
    state, _, note = wait_for_answer(page, 2)
    status, _, body = api(server, "POST", "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": CONTEXT})
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"
    assert state == "error" and note == body["error"]["message"]

    # The API key is remembered by the browser, not by the page.
    page.refresh()
    assert page.find_element(By.ID, "api-key").get_attribute("value") == API_KEY
