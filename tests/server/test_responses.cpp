// OpenAI-shaped responses, stream chunks, SSE framing, logprobs, metrics text and API key checks.
#include <gtest/gtest.h>

#include <cmath>

#include "server/auth.h"
#include "server/logprobs.h"
#include "server/metrics.h"
#include "server/responses.h"

namespace marlin::server {
namespace {

using nlohmann::json;

// Token i stands for the text "t<i>"; token 99 for a lone UTF-8 lead byte.
std::string fake_text(int32_t id) { return id == 99 ? std::string("\xe2") : "t" + std::to_string(id); }

ResponseMeta meta(Endpoint endpoint, bool logprobs = false) { return {"id-1", 1700000000, "model-x", endpoint, logprobs}; }

TEST(Responses, ChatCompletion) {
  const std::vector<ChoiceResult> choices = {{0, "Paris.", {}, FinishReason::kEndOfTurn}, {1, "Lyon", {}, FinishReason::kLength}};
  const json j = completion_json(meta(Endpoint::kChat), choices, {10, 5, 3}, fake_text);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"], "id-1");
  EXPECT_EQ(j["model"], "model-x");
  EXPECT_EQ(j["created"], 1700000000);
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["message"], json({{"role", "assistant"}, {"content", "Paris."}}));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  EXPECT_TRUE(j["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(j["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["usage"]["total_tokens"], 15);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
}

TEST(Responses, TextCompletionWithLogprobs) {
  TokenLogprob a{4, -0.5f, {{4, -0.5f}, {7, -1.5f}}};
  TokenLogprob b{8, -0.25f, {{8, -0.25f}, {2, -2.0f}}};
  const std::vector<ChoiceResult> choices = {{0, "t4t8", {a, b}, FinishReason::kStopString}};
  const json j = completion_json(meta(Endpoint::kCompletions, true), choices, {1, 2, 0}, fake_text);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "t4t8");
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], json({"t4", "t8"}));
  EXPECT_EQ(lp["token_logprobs"], json({-0.5, -0.25}));
  EXPECT_EQ(lp["text_offset"], json({0, 2}));
  EXPECT_EQ(lp["top_logprobs"][0], json({{"t4", -0.5}, {"t7", -1.5}}));
}

TEST(Responses, ChatLogprobsCarryBytes) {
  TokenLogprob t{99, -1.0f, {{99, -1.0f}}};
  const json j = completion_json(meta(Endpoint::kChat, true), {{0, "x", {t}, FinishReason::kLength}}, {}, fake_text);
  const json& entry = j["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(entry["bytes"], json({0xe2}));
  EXPECT_EQ(entry["top_logprobs"][0]["bytes"], json({0xe2}));
  // A partial UTF-8 character cannot go into JSON text as is: dump() replaces it.
  const std::string text = dump(j);
  EXPECT_NE(text.find("\xef\xbf\xbd"), std::string::npos);
  EXPECT_FALSE(json::parse(text, nullptr, false).is_discarded());
}

TEST(Responses, ChatChunks) {
  const json role = chunk_json(meta(Endpoint::kChat), {.index = 2, .role = true}, true, fake_text);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["index"], 2);
  EXPECT_EQ(role["choices"][0]["delta"], json({{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(role.contains("usage") && role["usage"].is_null());

  const json text = chunk_json(meta(Endpoint::kChat), {.index = 0, .text = "Hi"}, false, fake_text);
  EXPECT_EQ(text["choices"][0]["delta"], json({{"content", "Hi"}}));
  EXPECT_FALSE(text.contains("usage"));

  const json end = chunk_json(meta(Endpoint::kChat), {.index = 0, .finish = FinishReason::kLength}, false, fake_text);
  EXPECT_EQ(end["choices"][0]["delta"], json::object());
  EXPECT_EQ(end["choices"][0]["finish_reason"], "length");
}

TEST(Responses, CompletionChunkLogprobOffsetsContinue) {
  TokenLogprob t{3, -0.1f, {}};
  const std::vector<TokenLogprob> tokens = {t};
  const json c = chunk_json(meta(Endpoint::kCompletions, true), {.index = 0, .text = "t3", .logprobs = tokens, .text_offset = 7},
                            false, fake_text);
  EXPECT_EQ(c["choices"][0]["text"], "t3");
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], json({7}));
}

TEST(Responses, UsageChunkHasNoChoices) {
  const json u = usage_chunk_json(meta(Endpoint::kChat), {4, 6, 0});
  EXPECT_EQ(u["choices"], json::array());
  EXPECT_EQ(u["usage"]["total_tokens"], 10);
}

TEST(Responses, ErrorShape) {
  const json e = error_json(invalid_request("too long", "max_tokens", "context_length_exceeded"));
  EXPECT_EQ(e, json({{"error", {{"message", "too long"}, {"type", "invalid_request_error"}, {"param", "max_tokens"},
                                {"code", "context_length_exceeded"}}}}));
  const json bare = error_json(ApiError(500, "boom", "server_error"));
  EXPECT_TRUE(bare["error"]["param"].is_null());
  EXPECT_TRUE(bare["error"]["code"].is_null());
}

TEST(Responses, Models) {
  const json list = model_list_json("m", 5, 4096);
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 1u);
  EXPECT_EQ(list["data"][0]["id"], "m");
  EXPECT_EQ(list["data"][0]["object"], "model");
  EXPECT_EQ(list["data"][0]["max_model_len"], 4096);
}

TEST(Sse, Framing) {
  EXPECT_EQ(sse_event(json({{"a", 1}})), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  // JSON text never holds a raw newline, so one event is one line.
  EXPECT_EQ(sse_event(json({{"t", "a\nb"}})), "data: {\"t\":\"a\\nb\"}\n\n");
}

TEST(Logprobs, MatchALogSoftmaxInDoubles) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 0.5f};
  double total = 0;
  for (float l : logits) total += std::exp(double(l));
  auto expected = [&](int i) { return std::log(std::exp(double(logits[size_t(i)])) / total); };
  const TokenLogprob t = token_logprob(logits, 4, 3);
  EXPECT_EQ(t.token, 4);
  EXPECT_NEAR(t.logprob, expected(4), 1e-6);
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].first, 1);  // tie at 3.0: the lower id first
  EXPECT_EQ(t.top[1].first, 3);
  EXPECT_EQ(t.top[2].first, 0);
  for (const auto& [id, lp] : t.top) EXPECT_NEAR(lp, expected(id), 1e-6);
  EXPECT_TRUE(token_logprob(logits, 0, 0).top.empty());
  EXPECT_EQ(token_logprob(logits, 0, 50).top.size(), logits.size());
}

TEST(Metrics, PrometheusText) {
  Metrics m;
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/v1/chat/completions", 400);
  m.count_tokens(30, 12);
  m.observe_time_to_first_token(0.02);
  m.observe_time_to_first_token(100);
  m.observe_inter_token_latency(0.004);
  const std::string text = m.render({3, 1});
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has("marlin_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 2")) << text;
  EXPECT_TRUE(has("marlin_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"} 1"));
  EXPECT_TRUE(has("marlin_prompt_tokens_total 30"));
  EXPECT_TRUE(has("marlin_generation_tokens_total 12"));
  EXPECT_TRUE(has("marlin_queue_depth 3"));
  EXPECT_TRUE(has("marlin_running_sequences 1"));
  EXPECT_TRUE(has("marlin_time_to_first_token_seconds_bucket{le=\"0.01\"} 0"));
  EXPECT_TRUE(has("marlin_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"));
  EXPECT_TRUE(has("marlin_time_to_first_token_seconds_bucket{le=\"60\"} 1"));
  EXPECT_TRUE(has("marlin_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2"));
  EXPECT_TRUE(has("marlin_time_to_first_token_seconds_count 2"));
  EXPECT_TRUE(has("marlin_inter_token_latency_seconds_bucket{le=\"0.005\"} 1"));
  EXPECT_TRUE(has("# TYPE marlin_inter_token_latency_seconds histogram"));
}

TEST(Auth, ConstantTimeEqual) {
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "secret!"));
  EXPECT_FALSE(constant_time_equal("secret", "secretsecret"));  // cycling the key must not match a repeat
  EXPECT_FALSE(constant_time_equal("secret", ""));
  EXPECT_FALSE(constant_time_equal("", ""));
}

TEST(Auth, BearerToken) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_FALSE(bearer_token("Basic abc").has_value());
  EXPECT_FALSE(bearer_token("").has_value());
}

}  // namespace
}  // namespace marlin::server
