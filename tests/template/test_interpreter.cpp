// Interpreter behaviour not covered by the jinja2 parity snippets: the C++ API, JSON conversion,
// error reporting, clocks, threads, and Python text formatting against known Python results.
#include <gtest/gtest.h>

#include <thread>

#include "template/chat_template.h"
#include "template/py_format.h"
#include "template/text.h"

namespace marlin {
namespace {

using Json = nlohmann::ordered_json;

std::string render(const std::string& source, const Json& context = Json::object()) {
  return ChatTemplate(source).render(context);
}

std::string error_of(const std::string& source, const Json& context = Json::object()) {
  try {
    render(source, context);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TemplateApi, RendersVariables) { EXPECT_EQ(render("Hello {{ name }}!", {{"name", "world"}}), "Hello world!"); }

TEST(TemplateApi, OrderedJsonKeepsKeyOrderForTojson) {
  Json ordered = Json::object();
  ordered["tool"] = {{"name", "f"}, {"arguments", 1}};
  EXPECT_EQ(render("{{ tool | tojson }}", ordered), R"({"name": "f", "arguments": 1})");
  // nlohmann::json sorts object keys, so the same data comes out sorted.
  nlohmann::json sorted = nlohmann::json::object();
  sorted["tool"] = {{"name", "f"}, {"arguments", 1}};
  EXPECT_EQ(ChatTemplate("{{ tool | tojson }}").render(sorted), R"({"arguments": 1, "name": "f"})");
}

TEST(TemplateApi, JsonNumbersKeepTheirPythonTypes) {
  EXPECT_EQ(render("{{ a }} {{ b }} {{ c }} {{ d }}", {{"a", 1}, {"b", 1.0}, {"c", 18446744073709551615ull}, {"d", -5}}),
            "1 1.0 1.8446744073709552e+19 -5");
}

TEST(TemplateApi, ContextMustBeAnObject) {
  EXPECT_THROW(ChatTemplate("x").render(Json::array()), Error);
}

TEST(TemplateApi, SimpleApplyPassesBosEosAndGenerationPrompt) {
  const ChatTemplate tpl(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ tools is none }}{{ documents is none }}");
  EXPECT_EQ(tpl.apply({{"system", "S"}, {"user", "U"}}, true, "<s>", "</s>"),
            "<s><system>S</s><user>U</s><assistant>TrueTrue");
  EXPECT_EQ(tpl.apply({{"user", "U"}}, false, "", ""), "<user>UTrueTrue");
}

TEST(TemplateApi, ApplyNormalizesMessagesLikeTransformers) {
  const ChatTemplate tpl("{% for m in messages %}{{ m | tojson }};{% endfor %}");
  ChatTemplateInputs inputs;
  inputs.messages = Json::parse(R"([
    {"role": "user", "content": "q", "tool_calls": null},
    {"role": "assistant", "content": "a", "reasoning": "r"},
    {"role": "assistant", "reasoning_content": "rc", "content": "b", "thinking": null}
  ])");
  // null keys dropped; reasoning aliased as "thinking" (first) and "reasoning_content" (last).
  EXPECT_EQ(tpl.apply(inputs),
            R"({"role": "user", "content": "q"};)"
            R"({"thinking": "r", "role": "assistant", "content": "a", "reasoning": "r", "reasoning_content": "r"};)"
            R"({"thinking": "rc", "role": "assistant", "reasoning_content": "rc", "content": "b"};)");
}

TEST(TemplateApi, ApplyPassesToolsDocumentsAndVariables) {
  const ChatTemplate tpl("{{ tools | length }} {{ documents[0].title }} {{ enable_thinking }} {{ messages | length }}");
  ChatTemplateInputs inputs;
  inputs.tools = Json::parse(R"([{"type": "function"}, {"type": "function"}])");
  inputs.documents = Json::parse(R"([{"title": "T", "text": "x"}])");
  inputs.variables["enable_thinking"] = false;
  EXPECT_EQ(tpl.apply(inputs), "2 T False 0");
}

TEST(TemplateErrors, SyntaxErrorsGiveLineAndColumn) {
  EXPECT_NE(error_of("line one\n  {{ x + }}").find("template syntax error at 2:10"), std::string::npos)
      << error_of("line one\n  {{ x + }}");
  EXPECT_NE(error_of("{% if x %}\n{% endfor %}").find("at 2:4"), std::string::npos) << error_of("{% if x %}\n{% endfor %}");
  EXPECT_NE(error_of("a\r\nb\r\n{{ 'open }}").find("at 3:4: unterminated string"), std::string::npos);
}

TEST(TemplateErrors, RuntimeErrorsGiveThePosition) {
  const std::string e = error_of("ok\n{{ 1 + 'a' }}");
  EXPECT_NE(e.find("template error at 2:6"), std::string::npos) << e;
  EXPECT_NE(e.find("unsupported operand"), std::string::npos) << e;
}

TEST(TemplateErrors, RaiseExceptionCarriesTheTemplateMessage) {
  try {
    render("{% if messages | length == 0 %}{{ raise_exception('No messages given!') }}{% endif %}",
           {{"messages", Json::array()}});
    FAIL() << "expected TemplateRaisedError";
  } catch (const tmpl::TemplateRaisedError& e) {
    EXPECT_EQ(e.template_message(), "No messages given!");
    EXPECT_NE(std::string(e.what()).find("No messages given!"), std::string::npos);
  }
}

TEST(TemplateErrors, UndefinedUsedWrongIsAnError) {
  EXPECT_NE(error_of("{{ missing.attr }}").find("'missing' is undefined"), std::string::npos);
  EXPECT_EQ(render("[{{ missing }}][{{ missing | default('d') }}]"), "[][d]");
}

TEST(TemplateClock, StrftimeNowUsesTheInjectedClock) {
  ChatTemplateConfig config;
  config.clock = [] {
    std::tm t{};
    t.tm_year = 124, t.tm_mon = 6, t.tm_mday = 26, t.tm_wday = 5;
    return t;
  };
  EXPECT_EQ(ChatTemplate("{{ strftime_now('%d %b %Y %a') }}", config).render(Json::object()), "26 Jul 2024 Fri");
  // The default clock is the system's local time.
  const std::string year = ChatTemplate("{{ strftime_now('%Y') }}").render(Json::object());
  EXPECT_EQ(year.size(), 4u);
  EXPECT_GE(std::stoi(year), 2024);
}

TEST(TemplateThreads, ConcurrentRendersOfOneTemplateAgree) {
  const ChatTemplate tpl(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content | length %}"
      "{{ m.role | upper }}:{{ m.content }};{% endfor %}{{ ns.n }}");
  std::vector<std::string> results(8);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      std::string last;
      for (int i = 0; i < 200; ++i) {
        last = tpl.apply({{"user", "hello " + std::to_string(t)}, {"assistant", "hi"}}, false, "", "");
      }
      results[t] = last;
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < results.size(); ++t) {
    EXPECT_EQ(results[t], "USER:hello " + std::to_string(t) + ";ASSISTANT:hi;9");
  }
}

TEST(TemplateText, InvalidUtf8BytesPassThroughUnchanged) {
  const std::string bad = std::string("a\xff") + "b\xc3";
  Json context = {{"s", bad}};
  EXPECT_EQ(ChatTemplate("{{ s }}|{{ s | length }}|{{ s[::-1][::-1] }}|{{ s | upper }}").render(context),
            bad + "|4|" + bad + "|" + std::string("A\xff") + "B\xc3");
}

TEST(TemplateText, FloatReprMatchesPython) {
  // Expected strings are Python 3.11 repr() of the same doubles.
  const std::pair<double, const char*> cases[] = {
      {0.1, "0.1"},        {0.30000000000000004, "0.30000000000000004"},
      {1e22, "1e+22"},     {1e16, "1e+16"},
      {1e15, "1000000000000000.0"},
      {123456789.125, "123456789.125"},
      {1e-4, "0.0001"},    {1e-5, "1e-05"},
      {5e-324, "5e-324"},  {1.7976931348623157e308, "1.7976931348623157e+308"},
      {-0.0, "-0.0"},      {2.5, "2.5"},
      {-1.5e-7, "-1.5e-07"},
      {9007199254740993.0, "9007199254740992.0"},
  };
  for (const auto& [value, expected] : cases) EXPECT_EQ(tmpl::float_repr(value), expected) << expected;
}

TEST(TemplateText, CaseMappingFollowsPython) {
  EXPECT_EQ(tmpl::str_upper("straße ǆ ﬁ"), "STRASSE Ǆ FI");
  EXPECT_EQ(tmpl::str_lower("ÀÉÎ ΑΒΓ İ"), "àéî αβγ i̇");
  EXPECT_EQ(tmpl::str_title("hello wORLD ǆungla o'neil"), "Hello World ǅungla O'Neil");
  EXPECT_EQ(tmpl::str_capitalize("ǆx ABC"), "ǅx abc");
  EXPECT_TRUE(tmpl::str_is_upper("ABC 1"));
  EXPECT_FALSE(tmpl::str_is_upper("123"));
}

TEST(TemplateText, SplitFollowsPython) {
  using V = std::vector<std::string>;
  EXPECT_EQ(tmpl::str_split("  a  b  ", std::nullopt, -1), (V{"a", "b"}));
  EXPECT_EQ(tmpl::str_split("  a  b  ", std::nullopt, 1), (V{"a", "b  "}));
  EXPECT_EQ(tmpl::str_rsplit("  a  b  ", std::nullopt, 1), (V{"  a", "b"}));
  EXPECT_EQ(tmpl::str_split("a,,b", std::string(","), -1), (V{"a", "", "b"}));
  EXPECT_EQ(tmpl::str_rsplit("a,b,c", std::string(","), 1), (V{"a,b", "c"}));
  EXPECT_EQ(tmpl::str_splitlines("a\r\nb\u2028c\n"), (V{"a", "b", "c"}));
}

TEST(TemplateFeatures, GenerationBlockRendersItsBody) {
  EXPECT_EQ(render("{% generation %}{% set x = 1 %}[{{ x }}]{% endgeneration %}[{{ x }}]"), "[1][]");
}

TEST(TemplateFeatures, SandboxHidesPythonInternals) {
  EXPECT_EQ(render("[{{ ''.__class__ }}][{{ cycler }}][{{ self }}][{{ lipsum }}]"), "[][][][]");
  EXPECT_THROW(render("{{ ''.__class__.__mro__ }}"), Error);
  EXPECT_THROW(render("{% include 'x' %}"), Error);
  EXPECT_THROW(render("{% import 'x' as y %}"), Error);
  EXPECT_THROW(render("{% extends 'x' %}"), Error);
}

}  // namespace
}  // namespace marlin
