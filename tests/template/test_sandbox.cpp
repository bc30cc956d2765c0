// Sandbox limits: every hostile template ends in a marlin::Error naming the limit it hit, quickly
// and without exhausting the stack or memory.
#include <gtest/gtest.h>

#include <pthread.h>

#include <chrono>

#include "template/chat_template.h"

namespace marlin {
namespace {

using Json = nlohmann::ordered_json;

// Renders (parsing included) and returns the error message, or "(no error)".
std::string error_of(const std::string& source, const Json& context = Json::object(),
                     ChatTemplateConfig config = {}) {
  try {
    ChatTemplate(source, config).render(context);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_limit(const std::string& source, const std::string& limit_text, const Json& context = Json::object(),
                  ChatTemplateConfig config = {}) {
  const auto start = std::chrono::steady_clock::now();
  const std::string message = error_of(source, context, config);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(message.find(limit_text), std::string::npos)
      << "template: " << source.substr(0, 120) << "\nmessage: " << message;
  EXPECT_LT(seconds, 20.0) << source.substr(0, 120);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(TemplateSandbox, DeepNestingIsASyntaxErrorNotAStackOverflow) {
  expect_limit("{{ " + repeat("(", 100000) + "1" + repeat(")", 100000) + " }}", "nesting limit exceeded");
  expect_limit("{{ " + repeat("[", 100000) + repeat("]", 100000) + " }}", "nesting limit exceeded");
  expect_limit("{{ " + repeat("{'a': ", 100000) + "1" + repeat("}", 100000) + " }}", "nesting limit exceeded");
  expect_limit("{{ " + repeat("not ", 100000) + "x }}", "nesting limit exceeded");
  expect_limit("{{ " + repeat("- ", 100000) + "1 }}", "nesting limit exceeded");
  expect_limit("{{ 1" + repeat(" if 1 else 1", 100000) + " }}", "nesting limit exceeded");
  expect_limit(repeat("{% if true %}", 100000), "nesting limit exceeded");
  expect_limit(repeat("{% for x in y %}", 100000), "nesting limit exceeded");
  expect_limit(repeat("{% macro m() %}", 100000), "nesting limit exceeded");
}

TEST(TemplateSandbox, LongOperatorChainsHitTheExpressionDepthLimit) {
  expect_limit("{{ 1" + repeat(" + 1", 100000) + " }}", "expression depth limit exceeded");
  expect_limit("{{ 'a'" + repeat(" ~ 'a'", 100000) + " }}", "expression depth limit exceeded");
  expect_limit("{{ x" + repeat(".a", 100000) + " }}", "expression depth limit exceeded");
  expect_limit("{{ x" + repeat("[0]", 100000) + " }}", "expression depth limit exceeded");
  expect_limit("{{ x" + repeat("|trim", 100000) + " }}", "expression depth limit exceeded");
  expect_limit("{{ f" + repeat("()", 100000) + " }}", "expression depth limit exceeded");
  // A flat comparison chain is not deep, and renders.
  EXPECT_EQ(ChatTemplate("{{ 1" + repeat(" < 2", 100000) + " }}").render(Json::object()), "False");
}

TEST(TemplateSandbox, LoopsAreBounded) {
  expect_limit("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               "loop iteration limit exceeded (1000000 iterations)");
  ChatTemplateConfig config;
  config.limits.render.max_loop_iterations = 10;
  expect_limit("{% for i in range(11) %}{% endfor %}", "loop iteration limit exceeded (10 iterations)",
               Json::object(), config);
  EXPECT_EQ(error_of("{% for i in range(10) %}{% endfor %}", Json::object(), config), "(no error)");
  expect_limit("{{ range(100001) | length }}", "MAX_RANGE");
}

TEST(TemplateSandbox, StepsAreBounded) {
  ChatTemplateConfig config;
  config.limits.render.max_steps = 1000;
  expect_limit("{% for i in range(1000) %}{{ i }}{% endfor %}", "step limit exceeded (1000 steps)", Json::object(),
               config);
  // Bulk operations are charged by size, so a few steps cannot build huge lists.
  expect_limit("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
               "step limit exceeded");
  expect_limit("{{ ([1] * 1000000000) | length }}", "step limit exceeded");
  // Work proportional to real chat templates stays far below the default budget.
  EXPECT_EQ(error_of("{{ range(100000) | map('string') | map('string') | map('string') | join | length }}"),
            "(no error)");
}

TEST(TemplateSandbox, OutputAndStringsAreBounded) {
  expect_limit("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output limit exceeded (16777216 bytes)");
  expect_limit("{{ 'x' * 1000000000000 }}", "string limit exceeded");
  expect_limit("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
               "string limit exceeded");
  expect_limit("{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
               "string limit exceeded");
  expect_limit("{% set s = 'x' * 10000000 %}{{ [s, s, s, s] }}", "string limit exceeded");
  expect_limit("{% set s = 'x' * 10000000 %}{{ [s, s] | tojson }}", "string limit exceeded");
  expect_limit("{{ 'ab' | replace('', 'x' * 16000000) }}", "string limit exceeded");
  expect_limit("{{ 'a\nb' | indent(100000000) }}", "string limit exceeded");
  expect_limit("{{ '%999999999s' % 'x' }}", "format width or precision over 99");
  ChatTemplateConfig config;
  config.limits.render.max_output_bytes = 10;
  expect_limit("{{ 'x' * 11 }}", "limit exceeded (10 bytes)", Json::object(), config);
  EXPECT_EQ(error_of("{{ 'x' * 10 }}", Json::object(), config), "(no error)");
}

TEST(TemplateSandbox, RecursionIsBounded) {
  expect_limit("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "macro call depth limit exceeded (64 nested calls)");
  expect_limit("{% macro f(n) %}{{ caller is defined }}{% call f(n) %}{% endcall %}{% endmacro %}{{ f(1) }}",
               "macro call depth limit exceeded");
  ChatTemplateConfig config;
  config.limits.render.max_eval_depth = 50;
  expect_limit("{{ 1" + repeat(" + 1", 60) + " }}", "evaluation depth limit exceeded (50 levels)", Json::object(),
               config);
}

TEST(TemplateSandbox, DeepValuesAreRejected) {
  // (nlohmann::json copies recursively, so the input stays moderately deep and is moved.)
  Json deep = Json::array();
  for (int i = 0; i < 2000; ++i) {
    Json outer = Json::array();
    outer.push_back(std::move(deep));
    deep = std::move(outer);
  }
  Json context = Json::object();
  context["x"] = std::move(deep);
  expect_limit("{{ x }}", "nesting limit exceeded", context);
  expect_limit("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}",
               "value nesting limit exceeded");
  // A namespace may contain itself; printing it stops at the nesting limit.
  expect_limit("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", "nesting limit exceeded");
  expect_limit("{% set ns = namespace() %}{% set ns.me = [ns] %}{{ ns | tojson }}", "not JSON serializable");
}

TEST(TemplateSandbox, MutatingBuiltinsAreRefused) {
  expect_limit("{{ messages.append(1) }}", "unsafe", Json{{"messages", Json::array()}});
  expect_limit("{{ m.update({'role': 'x'}) }}", "unsafe", Json{{"m", Json::object()}});
  expect_limit("{{ m.pop('role') }}", "unsafe", Json{{"m", {{"role", "user"}}}});
  expect_limit("{% set ns = namespace(_private=1) %}", "underscore-prefixed");
  expect_limit("{% set ns = namespace() %}{% set ns._x = 1 %}", "underscore-prefixed");
  expect_limit("{% set m.role = 'x' %}", "non-namespace", Json{{"m", Json::object()}});
}

// The deepest evaluation the limits allow fits in a thread with a small stack (a Release build
// needs about 0.5 MB; 4 MB leaves room for debug and sanitizer builds).
TEST(TemplateSandbox, DeepestAllowedRenderFitsInASmallThreadStack) {
  struct Job {
    std::string source;
    std::string result;
  };
  auto run = [](void* arg) -> void* {
    auto* job = static_cast<Job*>(arg);
    try {
      job->result = ChatTemplate(job->source).render(Json::object());
    } catch (const Error& e) {
      job->result = e.what();
    }
    return nullptr;
  };
  const std::string ifs_open = repeat("{% if true %}", 10);
  const std::string ifs_close = repeat("{% endif %}", 10);
  for (int chain : {150, 400}) {
    Job job{"{% macro f(n) %}" + ifs_open + "{% if n > 0 %}{{ f(n - 1) }}{% else %}{{ 1" + repeat(" + 1", chain) +
                " }}{% endif %}" + ifs_close + "{% endmacro %}{{ f(63) }}",
            ""};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 4u << 20);
    pthread_t thread;
    ASSERT_EQ(pthread_create(&thread, &attr, run, &job), 0);
    pthread_join(thread, nullptr);
    pthread_attr_destroy(&attr);
    if (chain == 150) {
      EXPECT_EQ(job.result, "151");
    } else {
      EXPECT_NE(job.result.find("limit exceeded"), std::string::npos) << job.result;
    }
  }
}

}  // namespace
}  // namespace marlin
