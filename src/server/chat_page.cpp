#include "server/chat_page.h"

namespace marlin::server {
namespace {

// The whole page. Model text only ever reaches the DOM through textContent (never innerHTML).
constexpr std::string_view kChatPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>marlin chat</title>
<link rel="icon" href="data:,">
<style>
  :root { color-scheme: light dark; --accent: #2f6fde; --muted: #888; --bubble: #8881; --error: #d33; }
  * { box-sizing: border-box; }
  body { margin: 0; height: 100vh; display: flex; flex-direction: column; font: 15px/1.5 system-ui, sans-serif; }
  header { display: flex; align-items: center; gap: .75rem; padding: .5rem 1rem; border-bottom: 1px solid #8884; }
  header h1 { font-size: 1.1rem; margin: 0; }
  #model { color: var(--muted); font-size: .9rem; flex: 1; }
  #settings { padding: .5rem 1rem; border-bottom: 1px solid #8884; display: grid; gap: .4rem;
              grid-template-columns: max-content 1fr; align-items: center; }
  #settings[hidden] { display: none; }
  #messages { flex: 1; overflow-y: auto; padding: 1rem; display: flex; flex-direction: column; gap: .75rem; }
  #messages:empty::before { content: "Ask anything. Enter sends, Shift+Enter starts a new line."; color: var(--muted); margin: auto; }
  .message { max-width: 48rem; padding: .5rem .8rem; border-radius: .6rem; white-space: pre-wrap; overflow-wrap: anywhere; }
  .user { align-self: flex-end; background: var(--accent); color: #fff; }
  .user.withdrawn { opacity: .5; }
  .assistant { align-self: flex-start; background: var(--bubble); }
  .assistant[data-state="streaming"] .text::after { content: "\258D"; animation: blink 1s steps(1) infinite; }
  @keyframes blink { 50% { opacity: 0; } }
  .meta { font-size: .8rem; color: var(--muted); }
  .meta:empty { display: none; }
  .meta.error { color: var(--error); }
  form { display: flex; gap: .5rem; padding: .75rem 1rem; border-top: 1px solid #8884; }
  textarea, input { font: inherit; padding: .4rem; }
  #input { flex: 1; resize: vertical; min-height: 2.6rem; }
  button { font: inherit; padding: .4rem .9rem; cursor: pointer; }
  button:disabled { cursor: default; }
</style>
</head>
<body>
<header>
  <h1>marlin</h1>
  <span id="model"></span>
  <button id="toggle-settings" type="button" aria-expanded="false">Settings</button>
  <button id="new-chat" type="button">New chat</button>
</header>
<section id="settings" hidden>
  <label for="system">System prompt</label>
  <textarea id="system" rows="2" placeholder="optional"></textarea>
  <label for="temperature">Temperature</label>
  <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7">
  <label for="max-tokens">Max tokens</label>
  <input id="max-tokens" type="number" min="1" step="1" placeholder="until the answer ends">
  <label for="api-key">API key</label>
  <input id="api-key" type="password" autocomplete="off" placeholder="only if the server has one">
</section>
<main id="messages" aria-live="polite"></main>
<form id="composer">
  <textarea id="input" rows="2" placeholder="Message" autofocus></textarea>
  <button id="send" type="submit">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), settings: $("settings"), toggleSettings: $("toggle-settings"), newChat: $("new-chat"),
  system: $("system"), temperature: $("temperature"), maxTokens: $("max-tokens"), apiKey: $("api-key"),
  messages: $("messages"), composer: $("composer"), input: $("input"), send: $("send"), stop: $("stop"),
};
// Settings survive reloads (in this browser only).
const SAVED = { system: ui.system, temperature: ui.temperature, maxTokens: ui.maxTokens, apiKey: ui.apiKey };

let history = [];       // the finished turns of this conversation: {role, content}
let controller = null;  // aborts the answer being streamed; null when idle

function restoreSettings() {
  for (const [name, field] of Object.entries(SAVED)) {
    const value = localStorage.getItem("marlin." + name);
    if (value !== null) field.value = value;
    field.addEventListener("input", () => localStorage.setItem("marlin." + name, field.value));
  }
}

function requestHeaders() {
  const headers = { "Content-Type": "application/json" };
  const key = ui.apiKey.value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  return headers;
}

function requestBody(messages) {
  const system = ui.system.value.trim();
  const body = {
    messages: system ? [{ role: "system", content: system }, ...messages] : messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  const temperature = parseFloat(ui.temperature.value);
  if (!Number.isNaN(temperature)) body.temperature = temperature;
  const maxTokens = parseInt(ui.maxTokens.value, 10);
  if (maxTokens > 0) body.max_tokens = maxTokens;
  return body;
}

// The message of an error response (OpenAI's {"error": {"message"}}), or its status and text.
async function errorMessage(response) {
  const text = await response.text();
  try {
    const message = JSON.parse(text).error.message;
    if (message) return message;
  } catch (_) { /* not OpenAI's error shape */ }
  return `HTTP ${response.status} ${response.statusText}: ${text.slice(0, 300)}`;
}

// Calls onData with each `data:` payload (parsed JSON) of a server-sent event stream, until [DONE].
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the connection closed before the answer was complete");
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (!line.startsWith("data:")) continue;  // blank lines end events; ": keep-alive" comments
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        onData(JSON.parse(data));
      }
    }
  } finally {
    reader.cancel().catch(() => {});  // closes the connection when reading stopped early
  }
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 40;
}

// Runs update() and keeps the conversation scrolled to its end if it was there before.
function keepScrolled(update) {
  const stick = nearBottom();
  update();
  if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function addMessage(role) {
  const message = document.createElement("div");
  message.className = "message " + role;
  const text = document.createElement("div");
  text.className = "text";
  const meta = document.createElement("div");
  meta.className = "meta";
  message.append(text, meta);
  keepScrolled(() => ui.messages.append(message));
  return { message, text, meta };
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
}

function describeUsage(usage, seconds) {
  return `${usage.prompt_tokens} prompt + ${usage.completion_tokens} answer tokens in ${seconds.toFixed(1)} s`;
}

async function send() {
  const content = ui.input.value;
  if (!content.trim() || controller) return;
  ui.input.value = "";
  const conversation = history;  // "New chat" during the answer replaces `history`
  conversation.push({ role: "user", content });
  const user = addMessage("user");
  user.text.textContent = content;
  const answer = addMessage("assistant");
  answer.message.dataset.state = "streaming";
  controller = new AbortController();
  const signal = controller.signal;
  setBusy(true);

  let reply = "";
  let usage = null;
  const sentAt = performance.now();
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: requestHeaders(), body: JSON.stringify(requestBody(conversation)), signal,
    });
    if (response.status === 401) showSettings(true);  // where the API key goes
    if (!response.ok) throw new Error(await errorMessage(response));
    await readEvents(response, (data) => {
      if (data.error) throw new Error(data.error.message);
      if (data.usage) usage = data.usage;
      const delta = data.choices?.[0]?.delta?.content;
      if (!delta) return;
      reply += delta;
      keepScrolled(() => { answer.text.textContent = reply; });
    });
    answer.message.dataset.state = "done";
    if (usage) answer.meta.textContent = describeUsage(usage, (performance.now() - sentAt) / 1000);
  } catch (error) {
    if (signal.aborted) {
      answer.message.dataset.state = "stopped";
      answer.meta.textContent = "stopped";
    } else {
      answer.message.dataset.state = "error";
      answer.meta.classList.add("error");
      answer.meta.textContent = error.message;
    }
  } finally {
    if (controller?.signal === signal) controller = null;
    setBusy(controller !== null);
  }

  // A turn with an answer (complete or stopped) stays in the conversation; one without is
  // withdrawn, and after an error its text goes back to the input to be sent again.
  const state = answer.message.dataset.state;
  if (reply && state !== "error") {
    conversation.push({ role: "assistant", content: reply });
    return;
  }
  conversation.pop();
  user.message.classList.add("withdrawn");
  user.meta.textContent = "not part of the conversation";
  if (state === "error" && !ui.input.value && conversation === history) ui.input.value = content;
}

function showSettings(open) {
  ui.settings.hidden = !open;
  ui.toggleSettings.setAttribute("aria-expanded", String(open));
}

function newChat() {
  controller?.abort();
  controller = null;
  setBusy(false);
  history = [];
  ui.messages.replaceChildren();
  ui.input.focus();
}

async function showModel() {
  try {
    const response = await fetch("/v1/models", { headers: requestHeaders() });
    ui.model.textContent = response.ok ? (await response.json()).data[0].id : "";
  } catch (_) {
    ui.model.textContent = "";
  }
}

ui.composer.addEventListener("submit", (event) => { event.preventDefault(); send(); });
ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener("click", () => controller?.abort());
ui.newChat.addEventListener("click", newChat);
ui.toggleSettings.addEventListener("click", () => showSettings(ui.settings.hidden));
ui.apiKey.addEventListener("change", showModel);
restoreSettings();
showModel();
</script>
</body>
</html>
)html";

constexpr std::string_view kChatPageCsp =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace

std::string_view chat_page_html() { return kChatPage; }

std::string_view chat_page_csp() { return kChatPageCsp; }

}  // namespace marlin::server
