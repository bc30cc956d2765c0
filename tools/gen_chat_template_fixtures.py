#!/usr/bin/env python3
"""Generates the chat-template parity fixtures in tests/fixtures/templates/ with transformers'
own rendering (transformers.utils.chat_template_utils: jinja2 ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks, raise_exception, strftime_now, namespace and its tojson).

Writes
  <template>.cases.json  for each model template (*.jinja): varied conversations and the exact text
                         apply_chat_template renders, or the error it raises;
  corpus/<t>.cases.json  the same for a corpus of further real templates (macros, Markup, generators,
                         tool calling...) with a shorter list of conversations;
  snippets.json          one small template per interpreter feature (tools/template_snippets.py).

strftime_now is made deterministic by fixing datetime.now() to FIXED_NOW; the C++ test injects the
same time. The SmolLM2 template is read from the GGUF model's metadata when the model is present.

Usage: python3 tools/gen_chat_template_fixtures.py [--llama-cpp DIR]
  (from the repository root; no torch needed). With --llama-cpp, the corpus templates are first
  copied from DIR/models/templates (a llama.cpp checkout, which keeps the vendors' templates).
"""
import argparse
import datetime
import shutil
import json
import pathlib
import sys
import warnings

warnings.filterwarnings("ignore")

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures/templates"
sys.path.insert(0, str(ROOT / "tools"))

import template_snippets  # noqa: E402
import transformers.utils.chat_template_utils as ctu  # noqa: E402

FIXED_NOW = datetime.datetime(2025, 3, 7, 14, 5, 9)


class FixedDatetime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


# strftime_now() in transformers calls the module's datetime.now().
ctu.datetime = FixedDatetime


def render_chat(template, case):
    """Renders like tokenizer.apply_chat_template(..., tokenize=False)."""
    messages = ctu._normalize_chat_messages(case["messages"])
    rendered, _ = ctu.render_jinja_template(
        conversations=[messages],
        tools=case.get("tools"),
        documents=case.get("documents"),
        chat_template=template,
        add_generation_prompt=case["add_generation_prompt"],
        **case["variables"],
    )
    return rendered[0]


def outcome(fn):
    """{"expected": text}, {"raises": message} for raise_exception, or {"error": message}."""
    try:
        return {"expected": fn()}
    except Exception as e:  # noqa: BLE001 - any jinja2/Python error is an expected outcome
        if type(e).__name__ == "TemplateError":
            return {"raises": str(e)}
        return {"error": f"{type(e).__name__}: {e}"}


# ---- conversations ----

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web. Returns snippets — in any language: 日本語, ελληνικά.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "top_k": {"type": "integer", "default": 3}}},
    },
}

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731
S = lambda text: {"role": "system", "content": text}  # noqa: E731

LONG_TEXT = " ".join(f"word{i}" for i in range(400))


def case(name, messages, add_generation_prompt=True, tools=None, documents=None, **variables):
    return {"name": name, "messages": messages, "add_generation_prompt": add_generation_prompt,
            "tools": tools, "documents": documents, "variables": variables}


def common_cases(bos, eos):
    t = {"bos_token": bos, "eos_token": eos}
    return [
        case("single_user", [U("Hello!")], **t),
        case("single_user_no_prompt", [U("Hello!")], add_generation_prompt=False, **t),
        case("system_user", [S("You are terse."), U("What is 2+2?")], **t),
        case("system_user_no_prompt", [S("You are terse."), U("What is 2+2?")], add_generation_prompt=False, **t),
        case("two_turns", [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")], **t),
        case("two_turns_system", [S("Be nice."), U("Hi"), A("Hello!"), U("Bye")], **t),
        case("ends_with_assistant", [U("Hi"), A("Hello there.")], add_generation_prompt=False, **t),
        case("unicode", [U("Héllo wörld — ünïcödé ✓ 😀 你好 مرحبا שלום")], **t),
        case("unicode_system", [S("Réponds en français 🇫🇷."), U("Ça va ?")], **t),
        case("empty_user", [U("")], **t),
        case("empty_system", [S(""), U("x")], **t),
        case("whitespace_content", [U("  \n\t padded \t\n  ")], **t),
        case("whitespace_assistant", [U("q"), A("\n\nanswer\n\n"), U("  next  ")], **t),
        case("crlf_content", [U("line1\r\nline2\rline3\n")], **t),
        case("unicode_spaces", [U("\u3000ideographic\u00a0nbsp\u2009thin\u200bzw")], **t),
        case("template_syntax_in_content", [U("{{ not_a_var }} {% if x %} {# c #}")], **t),
        case("quotes_backslashes", [U("He said \"hi\" and 'bye' \\ \\n \\\\")], **t),
        case("special_tokens_in_content", [U("<|im_end|><|eot_id|><end_of_turn><start_of_turn>")], **t),
        case("long_content", [U(LONG_TEXT)], **t),
        case("many_turns", [m for i in range(8) for m in (U(f"question {i}"), A(f"answer {i}"))] + [U("last")], **t),
        case("many_turns_system", [S("sys")] + [m for i in range(5) for m in (U(f"q{i}"), A(f"a{i}"))] + [U("end")], **t),
        case("control_chars", [U("tab\there\x01\x7f")], **t),
        case("markdown_code", [U("```python\nprint('hi')\n```\n\n- item\n- item")], **t),
        case("other_special_tokens", [U("Hi")], bos_token="<BOS>", eos_token="<EOS>"),
        case("no_special_tokens", [U("Hi")], bos_token="", eos_token=""),
        case("extra_message_keys", [{"role": "user", "content": "Hi", "name": "bob", "id": 7}], **t),
        case("none_values_dropped", [{"role": "user", "content": "Hi", "tool_calls": None}], **t),
    ]


def llama_tool_cases(bos, eos, with_builtin):
    t = {"bos_token": bos, "eos_token": eos}
    tool_call = {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]}
    tool_result = {"role": "tool", "content": "{\"temperature\": 18}"}
    cases = [
        case("tools_in_user_message", [U("Weather in Paris?")], tools=[WEATHER_TOOL], **t),
        case("tools_in_system", [S("Use tools."), U("Weather in Paris?")], tools=[WEATHER_TOOL, SEARCH_TOOL], tools_in_user_message=False, **t),
        case("tools_with_system", [S("  Use tools wisely.  "), U("  Weather?  ")], tools=[WEATHER_TOOL], **t),
        case("tool_call_and_result", [U("Weather in Paris?"), tool_call, tool_result], tools=[WEATHER_TOOL], **t),
        case("tool_result_mapping", [U("q"), tool_call, {"role": "ipython", "content": {"temperature": 18, "sky": "clear"}}], tools=[WEATHER_TOOL], **t),
        case("multiple_tool_calls_rejected", [U("q"), {"role": "assistant", "tool_calls": [tool_call["tool_calls"][0], tool_call["tool_calls"][0]]}], tools=[WEATHER_TOOL], **t),
        case("tools_without_messages", [], tools=[WEATHER_TOOL], **t),
        case("date_string_given", [U("What day is it?")], date_string="01 Jan 2030", **t),
        case("custom_tools_variable", [U("q")], custom_tools=[SEARCH_TOOL], **t),
        case("empty_tool_list", [U("q")], tools=[], **t),
    ]
    if with_builtin:
        cases += [
            case("builtin_tools", [S("sys"), U("Search for cats")], builtin_tools=["brave_search", "wolfram_alpha", "code_interpreter"], **t),
            case("builtin_tool_call", [U("Search for cats"), {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "cats"}}}]}], builtin_tools=["brave_search"], **t),
        ]
    return cases


def qwen3_cases():
    t = {"bos_token": None, "eos_token": "<|im_end|>"}

    def call(name, arguments):
        return {"type": "function", "function": {"name": name, "arguments": arguments}}

    return [
        case("tools_no_system", [U("Weather in Paris?")], tools=[WEATHER_TOOL], **t),
        case("tools_with_system", [S("You are helpful."), U("Weather in Paris?")], tools=[WEATHER_TOOL, SEARCH_TOOL], **t),
        case("tool_call_dict_arguments", [U("Weather?"), {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris"})]}, {"role": "tool", "content": "{\"temp\": 18}"}], tools=[WEATHER_TOOL], **t),
        case("tool_call_string_arguments", [U("Weather?"), {"role": "assistant", "content": "Let me check.", "tool_calls": [call("get_weather", "{\"city\": \"Oslo\"}")]}], add_generation_prompt=False, tools=[WEATHER_TOOL], **t),
        case("parallel_tool_calls", [U("Weather in two cities?"), {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris"}), call("get_weather", {"city": "Rome"})]}, {"role": "tool", "content": "18"}, {"role": "tool", "content": "25"}], tools=[WEATHER_TOOL], **t),
        case("multi_step_tools", [U("Plan a trip"), {"role": "assistant", "content": "", "tool_calls": [call("search", {"query": "flights"})]}, {"role": "tool", "content": "flight list"}, {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Lima"})]}, {"role": "tool", "content": "sunny"}], tools=[WEATHER_TOOL, SEARCH_TOOL], **t),
        case("tool_call_without_function_wrapper", [U("q"), {"role": "assistant", "content": "", "tool_calls": [{"name": "search", "arguments": {"query": "x"}}]}], tools=[SEARCH_TOOL], **t),
        case("tool_call_content_none", [U("q"), {"role": "assistant", "content": None, "tool_calls": [call("search", {"query": "x"})]}], tools=[SEARCH_TOOL], **t),
        case("reasoning_content_field", [U("2+2?"), {"role": "assistant", "content": "4", "reasoning_content": "\nSimple addition.\n"}, U("3+3?")], **t),
        case("reasoning_last_turn", [U("2+2?"), {"role": "assistant", "content": "4", "reasoning_content": "Simple addition."}], add_generation_prompt=False, **t),
        case("think_inline", [U("2+2?"), A("<think>\nadd them\n</think>\n\n4")], add_generation_prompt=False, **t),
        case("think_inline_history", [U("2+2?"), A("<think>\nadd them\n</think>\n\n4"), U("and 3+3?")], **t),
        case("reasoning_alias_field", [U("q"), {"role": "assistant", "content": "a", "reasoning": "because"}], add_generation_prompt=False, **t),
        case("thinking_alias_field", [U("q"), {"role": "assistant", "content": "a", "thinking": "hmm"}], add_generation_prompt=False, **t),
        case("enable_thinking_false", [U("Hi")], enable_thinking=False, **t),
        case("enable_thinking_true", [U("Hi")], enable_thinking=True, **t),
        case("tool_response_marked_user", [U("<tool_response>\nresult\n</tool_response>"), A("ok")], add_generation_prompt=False, **t),
        case("system_in_middle", [U("a"), S("mid-system"), U("b")], **t),
    ]


def gemma_cases():
    t = {"bos_token": "<bos>", "eos_token": "<eos>"}
    return [
        case("alternation_error_two_users", [U("a"), U("b")], **t),
        case("alternation_error_assistant_first", [A("I start")], **t),
        case("alternation_error_after_system", [S("sys"), A("x"), U("y")], **t),
        case("content_parts", [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is this?  "}]}], **t),
        case("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys part"}]}, U("Hi")], **t),
        case("invalid_content_type", [{"role": "user", "content": 42}], **t),
        case("empty_messages", [], **t),
    ]


def smollm_cases():
    t = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    return [
        case("user_first_gets_default_system", [U("Hi"), A("Hello"), U("Bye")], **t),
        case("empty_messages", [], **t),
        case("tool_role_message", [U("q"), {"role": "tool", "content": "result"}], **t),
    ]


def corpus_cases():
    t = {"bos_token": "<s>", "eos_token": "</s>"}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    return [
        case("simple", [U("Hello")], **t),
        case("system_turns", [S("Be brief."), U("Hi"), A("Hello!"), U("Bye  ")], **t),
        case("no_generation_prompt", [U("Hi"), A("Yo")], add_generation_prompt=False, **t),
        case("tools", [S("sys"), U("Weather?")], tools=[WEATHER_TOOL, SEARCH_TOOL], **t),
        case("tool_call", [U("Weather?"), {"role": "assistant", "content": "", "tool_calls": [call]},
                           {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18C"},
                           A("It is 18C.")], tools=[WEATHER_TOOL], **t),
        case("parallel_tool_calls", [S("sys"), U("q"), {"role": "assistant", "content": "checking", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
            {"id": "b", "type": "function", "function": {"name": "search", "arguments": {"query": "x"}}}]},
            {"role": "tool", "tool_call_id": "a", "content": "sunny"}, {"role": "tool", "tool_call_id": "b", "content": "result"}],
            tools=[WEATHER_TOOL, SEARCH_TOOL], **t),
        case("reasoning", [U("q"), {"role": "assistant", "content": "ans", "reasoning_content": "think"}, U("q2")], **t),
        case("think_inline", [U("q"), A("<think>\nhmm\n</think>\n\nanswer"), U("q2")], enable_thinking=True, **t),
        case("unicode", [U("héllo 😀 日本")], enable_thinking=False, **t),
        case("content_parts", [{"role": "user", "content": [{"type": "text", "text": "describe"}, {"type": "image"}]}], **t),
        case("empty_assistant", [U("q"), A(""), U("again")], **t),
        case("documents", [U("Summarize")], documents=[{"title": "Doc A", "text": "alpha"}, {"title": "Doc B", "text": "beta"}], **t),
        case("many_turns", [S("s")] + [m for i in range(6) for m in (U(f"u{i}"), A(f"a{i}"))] + [U("end")], **t),
    ]


COHERE_TOOL = {
    "name": "internet_search",
    "description": "Returns a list of relevant document snippets for a textual query.",
    "parameter_definitions": {"query": {"description": "Query to search the internet with", "type": "str", "required": True}},
}

# Further real templates (copied from llama.cpp's models/templates) chosen for the features they
# use: macros, Markup (|safe + str), generators passed to tojson, namespaces, tool-call formats.
# Tool-use variants get their kind of tool list in every conversation.
CORPUS = {
    "openai-gpt-oss-120b.jinja": None,
    "meetkai-functionary-medium-v3.1.jinja": None,
    "meetkai-functionary-medium-v3.2.jinja": None,
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": [COHERE_TOOL],
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": [WEATHER_TOOL, SEARCH_TOOL],
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": None,
    "microsoft-Phi-3.5-mini-instruct.jinja": None,
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": None,
    "ibm-granite-granite-3.3-2B-Instruct.jinja": None,
    "Qwen3-Coder.jinja": None,
    "GLM-4.6.jinja": None,
    "moonshotai-Kimi-K2.jinja": None,
    "HuggingFaceTB-SmolLM3-3B.jinja": None,
    "google-gemma-2-2b-it.jinja": None,
}

TEMPLATES = {
    "smollm2-135m-instruct.jinja": lambda: common_cases("<|im_start|>", "<|im_end|>") + smollm_cases(),
    "llama-3.1-8b-instruct.jinja": lambda: common_cases("<|begin_of_text|>", "<|eot_id|>") + llama_tool_cases("<|begin_of_text|>", "<|eot_id|>", True),
    "llama-3.2-3b-instruct.jinja": lambda: common_cases("<|begin_of_text|>", "<|eot_id|>") + llama_tool_cases("<|begin_of_text|>", "<|eot_id|>", False),
    "qwen3-0.6b.jinja": lambda: common_cases(None, "<|im_end|>") + qwen3_cases(),
    "gemma-3-it.jinja": lambda: common_cases("<bos>", "<eos>") + gemma_cases(),
}


def extract_smollm2_template():
    model = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    target = FIXTURES / "smollm2-135m-instruct.jinja"
    if not model.exists():
        print(f"note: {model} not found; keeping {target.name}")
        return
    from gguf import GGUFReader

    field = GGUFReader(str(model)).fields["tokenizer.chat_template"]
    target.write_bytes(bytes(field.parts[field.data[0]]))


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def write_cases(directory, name, cases):
    template = (directory / name).read_text()
    for c in cases:
        c.update(outcome(lambda c=c: render_chat(template, c)))
    data = {"template": name, "fixed_now": FIXED_NOW.isoformat(), "cases": cases}
    out = directory / name.replace(".jinja", ".cases.json")
    write_json(out, data)
    kinds = [next(k for k in ("expected", "raises", "error") if k in c) for c in cases]
    print(f"{out.relative_to(FIXTURES)}: {len(cases)} cases ({kinds.count('raises')} raise, {kinds.count('error')} error)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-cpp", type=pathlib.Path, help="llama.cpp checkout to copy corpus templates from")
    args = parser.parse_args()
    extract_smollm2_template()
    for name, make_cases in TEMPLATES.items():
        write_cases(FIXTURES, name, make_cases())
    corpus = FIXTURES / "corpus"
    corpus.mkdir(exist_ok=True)
    for name, tools in CORPUS.items():
        if args.llama_cpp:
            shutil.copyfile(args.llama_cpp / "models/templates" / name, corpus / name)
        cases = corpus_cases()
        for c in cases:
            if tools is not None:
                c["tools"] = tools
        write_cases(corpus, name, cases)

    # Snippets without a context of their own render with the shared one.
    snippets = [(s, None) for s in template_snippets.SNIPPETS] + template_snippets.SNIPPETS_WITH_CONTEXT
    entries = []
    for source, context in snippets:
        entry = {"template": source}
        if context is not None:
            entry["context"] = context
        variables = template_snippets.CTX if context is None else context
        entry.update(outcome(lambda: ctu._compile_jinja_template(source).render(**variables)))
        entries.append(entry)
    write_json(FIXTURES / "snippets.json",
               {"fixed_now": FIXED_NOW.isoformat(), "shared_context": template_snippets.CTX, "snippets": entries})
    print(f"snippets.json: {len(entries)} snippets")


if __name__ == "__main__":
    main()
