// marlin run: answer one prompt and print only the answer on stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct RunOptions {
  GenerateOptions common;
  std::string prompt;
  std::string system;
  bool raw = false;
  bool verbose = false;
};

void run(RunOptions& o) {
  finish_generate_options(o.common);
  if (o.prompt == "-") o.prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
  Engine engine({resolve_model_path(o.common.model), o.common.threads, parse_device(o.common.device)});
  std::vector<int32_t> prompt;
  if (o.raw) {
    prompt = engine.raw_prompt(o.prompt);
  } else {
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", o.prompt});
    prompt = engine.chat_prompt(messages, true);
  }
  const int64_t context = std::min<int64_t>(o.common.context, engine.model().config().context_length);
  Session session(engine.model(), engine.tokenizer(), context);
  auto result = session.generate(prompt, o.common.generation, print_streamed);
  if (result.text.empty() || result.text.back() != '\n') print_streamed("\n");
  if (o.verbose) {
    std::fprintf(stderr, "prompt: %d tokens, %.1f tokens/s; answer: %zu tokens, %.1f tokens/s; finish: %s\n",
                 result.prompt_tokens, result.prompt_tokens / std::max(result.prefill_seconds, 1e-9),
                 result.tokens.size(), result.tokens.size() / std::max(result.decode_seconds, 1e-9),
                 finish_reason_name(result.finish));
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  auto* c = app.add_subcommand("run", "Answer one prompt (chat-formatted unless --raw); prints only the answer");
  c->add_option("prompt", options->prompt, "The prompt ('-' reads it from stdin)")->required();
  add_generate_options(c, options->common);
  c->add_option("--system", options->system, "A system message to put before the prompt");
  c->add_flag("--raw", options->raw, "Send the prompt as plain text, without the chat template");
  c->add_flag("-v,--verbose", options->verbose, "Print token counts and speed on stderr");
  c->callback([options] { run(*options); });
}

}  // namespace marlin::cli
