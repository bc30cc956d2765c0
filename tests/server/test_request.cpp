// Parsing and validation of API requests: every field's type and range, the limits, and the
// context check.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/request.h"

namespace marlin::server {
namespace {

using nlohmann::json;

RequestLimits limits() {
  RequestLimits l;
  l.vocab_size = 1000;
  return l;
}

json chat_body(json extra = json::object()) {
  json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  body.update(extra);
  return body;
}

// The ApiError a parse throws (fails the test when it does not throw one).
ApiError chat_error(const json& body) {
  try {
    parse_chat_request(body, limits());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body.dump();
  return ApiError(0, "", "");
}

ApiError completion_error(const json& body) {
  try {
    parse_completion_request(body, limits());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body.dump();
  return ApiError(0, "", "");
}

TEST(ChatRequest, ReadsEveryField) {
  const auto r = parse_chat_request(chat_body({{"max_tokens", 7}, {"temperature", 0.5}, {"top_p", 0.9}, {"top_k", 5},
                                               {"min_p", 0.1}, {"seed", 42}, {"stop", "x"}, {"n", 3},
                                               {"presence_penalty", 0.5}, {"frequency_penalty", -0.5},
                                               {"logit_bias", {{"12", 5}, {"7", -100}}}, {"logprobs", true},
                                               {"top_logprobs", 4}, {"user", "u"}, {"stream", true},
                                               {"stream_options", {{"include_usage", true}}}, {"unknown", {1, 2}}}),
                                    limits());
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].role, "user");
  EXPECT_EQ(r.messages[0].content, "hi");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.n, 3);
  ASSERT_EQ(r.logit_bias.size(), 2u);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 4);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ChatRequest, DefaultsAreOpenAIs) {
  const auto r = parse_chat_request(chat_body(), limits());
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.logprobs);
  EXPECT_FALSE(r.seed.has_value());
}

TEST(ChatRequest, NullMeansAbsent) {
  const auto r = parse_chat_request(chat_body({{"max_tokens", nullptr}, {"temperature", nullptr}, {"stop", nullptr}}), limits());
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
}

TEST(ChatRequest, MaxCompletionTokensWinsOverMaxTokens) {
  EXPECT_EQ(parse_chat_request(chat_body({{"max_tokens", 9}, {"max_completion_tokens", 4}}), limits()).max_tokens, 4);
}

TEST(ChatRequest, ContentPartsAreJoined) {
  json body = chat_body();
  body["messages"] = {{{"role", "developer"}, {"content", "be brief"}},
                      {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
                      {{"role", "assistant"}, {"content", nullptr}}};
  const auto r = parse_chat_request(body, limits());
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
}

TEST(ChatRequest, RejectsBadMessages) {
  EXPECT_EQ(chat_error({{"model", "m"}}).param, "messages");
  EXPECT_EQ(chat_error(chat_body({{"messages", json::array()}})).param, "messages");
  EXPECT_EQ(chat_error(chat_body({{"messages", "hi"}})).param, "messages");
  EXPECT_EQ(chat_error(chat_body({{"messages", {{{"content", "no role"}}}}})).param, "messages");
  EXPECT_EQ(chat_error(chat_body({{"messages", {{{"role", "user"}, {"content", 5}}}}})).param, "messages");
  const json image = {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}}}}};
  EXPECT_NE(std::string(chat_error(chat_body({{"messages", image}})).what()).find("image_url"), std::string::npos);
}

TEST(ChatRequest, WrongTypesAre400sNamingTheField) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, json>>{
           {"max_tokens", "12"}, {"max_tokens", 1.5}, {"temperature", "hot"}, {"top_p", true}, {"top_k", 2.5},
           {"seed", "s"}, {"stop", 3}, {"stop", {1, 2}}, {"n", "2"}, {"stream", "yes"}, {"logprobs", 1},
           {"logit_bias", {1, 2}}, {"logit_bias", {{"5", "x"}}}, {"user", 5}, {"model", 3}, {"stream_options", 1}}) {
    json extra = {{name, value}};
    if (name != "stream") extra["stream"] = true;  // stream_options needs it
    const ApiError e = chat_error(chat_body(extra));
    EXPECT_EQ(e.status, 400) << name;
    EXPECT_EQ(e.param, name) << name << " = " << value.dump();
    EXPECT_EQ(e.type, "invalid_request_error");
  }
}

TEST(ChatRequest, OutOfRangeValuesAre400s) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, json>>{
           {"max_tokens", 0}, {"max_tokens", -1}, {"max_tokens", int64_t(1) << 40}, {"max_tokens", uint64_t(1) << 63},
           {"n", 0}, {"n", -2}, {"n", 17}, {"n", 1000000000}, {"top_k", -1}, {"top_k", 1001}, {"temperature", -0.1},
           {"temperature", 2.5}, {"top_p", 0}, {"top_p", 1.5}, {"min_p", -1}, {"presence_penalty", 3},
           {"frequency_penalty", -2.5}, {"top_logprobs", 21}, {"top_logprobs", -1}}) {
    json extra = {{name, value}};
    if (name == "top_logprobs") extra["logprobs"] = true;
    const ApiError e = chat_error(chat_body(extra));
    EXPECT_EQ(e.status, 400) << name << " = " << value.dump();
    EXPECT_EQ(e.param, name) << name << " = " << value.dump();
  }
}

TEST(ChatRequest, StopStringLimits) {
  EXPECT_EQ(chat_error(chat_body({{"stop", {"a", "b", "c", "d", "e"}}})).param, "stop");
  EXPECT_EQ(chat_error(chat_body({{"stop", std::string(257, 'x')}})).param, "stop");
  EXPECT_EQ(chat_error(chat_body({{"stop", ""}})).param, "stop");
  EXPECT_EQ(parse_chat_request(chat_body({{"stop", {"a", "b", "c", "d"}}}), limits()).stop.size(), 4u);
}

TEST(ChatRequest, LogitBiasNeedsTokenIdsInTheVocabulary) {
  EXPECT_EQ(chat_error(chat_body({{"logit_bias", {{"1000", 1}}}})).param, "logit_bias");
  EXPECT_EQ(chat_error(chat_body({{"logit_bias", {{"-1", 1}}}})).param, "logit_bias");
  EXPECT_EQ(chat_error(chat_body({{"logit_bias", {{"abc", 1}}}})).param, "logit_bias");
  EXPECT_EQ(chat_error(chat_body({{"logit_bias", {{"5", 101}}}})).param, "logit_bias");
  const auto r = parse_chat_request(chat_body({{"logit_bias", {{"999", -100}}}}), limits());
  ASSERT_EQ(r.logit_bias.size(), 1u);
  EXPECT_EQ(r.logit_bias[0].first, 999);
  EXPECT_FLOAT_EQ(r.logit_bias[0].second, -100.0f);
}

TEST(ChatRequest, TopLogprobsNeedsLogprobs) { EXPECT_EQ(chat_error(chat_body({{"top_logprobs", 2}})).param, "top_logprobs"); }

TEST(ChatRequest, StreamOptionsNeedStream) { EXPECT_EQ(chat_error(chat_body({{"stream_options", {{"include_usage", true}}}})).param, "stream_options"); }

TEST(CompletionRequest, PromptForms) {
  const json base = {{"model", "m"}};
  auto parse = [&](json prompt) {
    json body = base;
    body["prompt"] = prompt;
    return parse_completion_request(body, limits()).prompts;
  };
  auto one = parse("hello");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_FALSE(one[0].is_tokens);
  EXPECT_EQ(one[0].text, "hello");
  EXPECT_EQ(parse({"a", "b", "c"}).size(), 3u);
  auto tokens = parse({1, 2, 999});
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_TRUE(tokens[0].is_tokens);
  EXPECT_EQ(tokens[0].tokens, (std::vector<int32_t>{1, 2, 999}));
  auto lists = parse({{1, 2}, {3}});
  ASSERT_EQ(lists.size(), 2u);
  EXPECT_EQ(lists[1].tokens, std::vector<int32_t>{3});
}

TEST(CompletionRequest, RejectsBadPrompts) {
  auto error = [](json prompt) {
    return completion_error({{"prompt", prompt}});
  };
  EXPECT_EQ(completion_error({{"model", "m"}}).param, "prompt");
  EXPECT_EQ(error("").param, "prompt");
  EXPECT_EQ(error(json::array()).param, "prompt");
  EXPECT_EQ(error({""}).param, "prompt");
  EXPECT_EQ(error({json::array()}).param, "prompt");
  EXPECT_EQ(error(5).param, "prompt");
  EXPECT_EQ(error({1, "a"}).param, "prompt");
  EXPECT_EQ(error({1.5}).param, "prompt");
  EXPECT_EQ(error({{"a"}}).param, "prompt");
  const ApiError outside = error({1, 1000});
  EXPECT_EQ(outside.status, 400);
  EXPECT_NE(std::string(outside.what()).find("1000"), std::string::npos);
  EXPECT_EQ(error({-1}).param, "prompt");
  EXPECT_EQ(error(json::array({uint64_t(1) << 63})).param, "prompt");
  EXPECT_EQ(error(json(std::vector<std::string>(65, "a"))).param, "prompt");
}

TEST(CompletionRequest, ChoicesAreBounded) {
  const json prompts(std::vector<std::string>(8, "a"));
  EXPECT_EQ(parse_completion_request({{"prompt", prompts}, {"n", 8}}, limits()).n, 8);
  EXPECT_EQ(completion_error({{"prompt", prompts}, {"n", 9}}).param, "n");
}

TEST(CompletionRequest, LegacyLogprobsIsACount) {
  const auto r = parse_completion_request({{"prompt", "x"}, {"logprobs", 3}}, limits());
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_EQ(completion_error({{"prompt", "x"}, {"logprobs", 6}}).param, "logprobs");
  EXPECT_EQ(completion_error({{"prompt", "x"}, {"logprobs", true}}).param, "logprobs");
}

TEST(CompletionRequest, UnsupportedOptionsAreRefused) {
  EXPECT_EQ(completion_error({{"prompt", "x"}, {"echo", true}}).param, "echo");
  EXPECT_EQ(completion_error({{"prompt", "x"}, {"suffix", "y"}}).param, "suffix");
  EXPECT_EQ(completion_error({{"prompt", "x"}, {"best_of", 2}}).param, "best_of");
  EXPECT_NO_THROW(parse_completion_request({{"prompt", "x"}, {"echo", false}, {"best_of", 1}}, limits()));
}

TEST(TokenizeRequest, TextOrMessages) {
  const auto text = parse_tokenize_request({{"prompt", "hi"}, {"add_special_tokens", false}}, limits());
  EXPECT_FALSE(text.use_messages);
  EXPECT_EQ(text.text, "hi");
  EXPECT_FALSE(text.add_special_tokens);
  EXPECT_EQ(parse_tokenize_request({{"content", "yo"}}, limits()).text, "yo");
  const auto chat = parse_tokenize_request({{"messages", {{{"role", "user"}, {"content", "x"}}}}}, limits());
  EXPECT_TRUE(chat.use_messages);
  EXPECT_TRUE(chat.add_generation_prompt);
  EXPECT_THROW(parse_tokenize_request(json::object(), limits()), ApiError);
  EXPECT_THROW(parse_tokenize_request({{"prompt", 5}}, limits()), ApiError);
}

TEST(DetokenizeRequest, TokensInTheVocabulary) {
  EXPECT_EQ(parse_detokenize_request({{"tokens", {0, 999}}}, limits()), (std::vector<int32_t>{0, 999}));
  EXPECT_THROW(parse_detokenize_request({{"tokens", {1000}}}, limits()), ApiError);
  EXPECT_THROW(parse_detokenize_request({{"tokens", "1 2"}}, limits()), ApiError);
  EXPECT_THROW(parse_detokenize_request(json::object(), limits()), ApiError);
}

TEST(JsonBody, MustBeAnObjectOfValidJson) {
  EXPECT_TRUE(parse_json_object(R"({"a": 1})").is_object());
  for (std::string bad : {std::string(R"({"a": )"), std::string("[1, 2]"), std::string("\"text\""), std::string("12"),
                          std::string(""), std::string("{\"a\": \"\xff\xfe\"}"), std::string("{\"a\": \"\xc3\"}"),
                          std::string("{} {}")}) {
    try {
      parse_json_object(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
    }
  }
}

TEST(JsonBody, DeepNestingIsAnErrorOrAValueNotACrash) {
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_NO_THROW(parse_json_object(deep));
}

TEST(PlanMaxTokens, FitsOrNamesBothCounts) {
  EXPECT_EQ(plan_max_tokens(10, 20, 0, 100, "messages"), 20);
  EXPECT_EQ(plan_max_tokens(10, std::nullopt, 0, 100, "messages"), 90);
  EXPECT_EQ(plan_max_tokens(10, std::nullopt, 16, 100, "prompt"), 16);
  EXPECT_EQ(plan_max_tokens(95, std::nullopt, 16, 100, "prompt"), 5);
  EXPECT_EQ(plan_max_tokens(10, 90, 0, 100, "messages"), 90);
  try {
    plan_max_tokens(10, 91, 0, 100, "messages");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
    EXPECT_EQ(e.param, "max_tokens");
    const std::string m = e.what();
    EXPECT_NE(m.find("100"), std::string::npos) << m;
    EXPECT_NE(m.find("10 tokens of prompt"), std::string::npos) << m;
    EXPECT_NE(m.find("91"), std::string::npos) << m;
  }
  try {
    plan_max_tokens(100, std::nullopt, 0, 100, "prompt");
    FAIL();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code, "context_length_exceeded");
    EXPECT_EQ(e.param, "prompt");
  }
}

}  // namespace
}  // namespace marlin::server
