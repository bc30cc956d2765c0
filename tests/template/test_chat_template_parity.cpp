// Byte-for-byte parity with transformers' apply_chat_template on real model templates and on one
// snippet per interpreter feature. Expected outputs come from tools/gen_chat_template_fixtures.py.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "template/chat_template.h"

namespace marlin {
namespace {

using Json = nlohmann::ordered_json;

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/templates/";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json read_json(const std::string& path) { return Json::parse(read_file(path)); }

// The fixtures' fixed "now" ("2025-03-07T14:05:09") as a complete std::tm (weekday, yearday).
tmpl::Clock fixed_clock(const std::string& iso) {
  std::tm tm{};
  EXPECT_NE(strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm), nullptr) << iso;
  const time_t t = timegm(&tm);
  std::tm full{};
  gmtime_r(&t, &full);
  return [full] { return full; };
}

// Checks one rendering against the fixture's expected text, raise_exception message or error.
template <typename RenderFn>
void check_outcome(const Json& expected, RenderFn render, const std::string& label) {
  if (expected.contains("expected")) {
    std::string got;
    try {
      got = render();
    } catch (const std::exception& e) {
      ADD_FAILURE() << label << ": threw " << e.what();
      return;
    }
    EXPECT_EQ(got, expected["expected"].get<std::string>()) << label;
  } else if (expected.contains("raises")) {
    try {
      const std::string got = render();
      ADD_FAILURE() << label << ": expected raise_exception, rendered " << got;
    } catch (const tmpl::TemplateRaisedError& e) {
      EXPECT_EQ(e.template_message(), expected["raises"].get<std::string>()) << label;
    } catch (const std::exception& e) {
      ADD_FAILURE() << label << ": expected raise_exception, got " << e.what();
    }
  } else {
    ASSERT_TRUE(expected.contains("error")) << label;
    try {
      const std::string got = render();
      ADD_FAILURE() << label << ": expected an error like '" << expected["error"].get<std::string>()
                    << "', rendered " << got;
    } catch (const tmpl::TemplateRaisedError& e) {
      ADD_FAILURE() << label << ": expected an error, got raise_exception " << e.what();
    } catch (const Error&) {
      // Any marlin::Error: messages need not match jinja2's word for word.
    }
  }
}

// Renders every case of a <template>.cases.json fixture; returns how many cases it holds.
size_t check_cases_file(const std::string& dir, const std::string& name) {
  const Json fixture = read_json(dir + name + ".cases.json");
  ChatTemplateConfig config;
  config.clock = fixed_clock(fixture["fixed_now"].get<std::string>());
  const ChatTemplate tpl(read_file(dir + fixture["template"].get<std::string>()), config);
  for (const Json& c : fixture["cases"]) {
    ChatTemplateInputs inputs;
    inputs.messages = c["messages"];
    inputs.tools = c["tools"];
    inputs.documents = c.value("documents", Json(nullptr));
    inputs.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    inputs.variables = c["variables"];
    check_outcome(c, [&] { return tpl.apply(inputs); }, name + "/" + c["name"].get<std::string>());
  }
  return fixture["cases"].size();
}

class ModelTemplateParity : public testing::TestWithParam<std::string> {};

TEST_P(ModelTemplateParity, MatchesTransformers) { EXPECT_GE(check_cases_file(kDir, GetParam()), 30u); }

// Further real templates (from llama.cpp's models/templates) that use macros, Markup, generators
// and various tool-call formats.
TEST(CorpusTemplateParity, MatchesTransformers) {
  const char* kCorpus[] = {
      "openai-gpt-oss-120b", "meetkai-functionary-medium-v3.1", "meetkai-functionary-medium-v3.2",
      "CohereForAI-c4ai-command-r-plus-tool_use", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use",
      "mistralai-Mistral-Nemo-Instruct-2407", "microsoft-Phi-3.5-mini-instruct",
      "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "ibm-granite-granite-3.3-2B-Instruct", "Qwen3-Coder",
      "GLM-4.6", "moonshotai-Kimi-K2", "HuggingFaceTB-SmolLM3-3B", "google-gemma-2-2b-it",
  };
  size_t cases = 0;
  for (const char* name : kCorpus) cases += check_cases_file(kDir + "corpus/", name);
  EXPECT_GE(cases, 150u);
}

INSTANTIATE_TEST_SUITE_P(Templates, ModelTemplateParity,
                         testing::Values("smollm2-135m-instruct", "llama-3.1-8b-instruct",
                                         "llama-3.2-3b-instruct", "qwen3-0.6b", "gemma-3-it"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(SnippetParity, EveryFeatureMatchesJinja2) {
  const Json fixture = read_json(kDir + "snippets.json");
  ChatTemplateConfig config;
  config.clock = fixed_clock(fixture["fixed_now"].get<std::string>());
  ASSERT_GE(fixture["snippets"].size(), 150u);
  for (const Json& s : fixture["snippets"]) {
    const std::string source = s["template"].get<std::string>();
    const Json& context = s.contains("context") ? s["context"] : fixture["shared_context"];
    check_outcome(s, [&] { return ChatTemplate(source, config).render(context); }, "snippet " + source);
  }
}

// The SmolLM2 fixture template is the one in the model's GGUF metadata; the simple apply() API
// renders it the same way as the JSON-inputs API.
TEST(ChatTemplateApi, SimpleApplyMatchesFixture) {
  const Json fixture = read_json(kDir + "smollm2-135m-instruct.cases.json");
  const ChatTemplate tpl(read_file(kDir + "smollm2-135m-instruct.jinja"));
  for (const Json& c : fixture["cases"]) {
    if (c["name"] != "system_user" && c["name"] != "two_turns") continue;
    std::vector<ChatMessage> messages;
    for (const Json& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    EXPECT_EQ(tpl.apply(messages, c["add_generation_prompt"].get<bool>(),
                        c["variables"]["bos_token"].get<std::string>(),
                        c["variables"]["eos_token"].get<std::string>()),
              c["expected"].get<std::string>());
  }
}

}  // namespace
}  // namespace marlin
