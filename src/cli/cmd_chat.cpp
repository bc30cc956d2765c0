// marlin chat: an interactive conversation on the terminal.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

namespace marlin::cli {
namespace {

struct ChatOptions {
  GenerateOptions common;
  std::string system;
};

constexpr const char* kHelp = "commands: /reset forgets the conversation, /exit (or Ctrl-D) quits";

// Reads one message; a line ending in '\' continues on the next line. False at end of input.
bool read_message(std::string& message, bool interactive) {
  message.clear();
  std::string line;
  if (interactive) std::fputs("> ", stdout), std::fflush(stdout);
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\\') {
      message += line.substr(0, line.size() - 1) + "\n";
      continue;
    }
    message += line;
    return true;
  }
  return !message.empty();
}

void chat(ChatOptions& o) {
  finish_generate_options(o.common);
  Engine engine({resolve_model_path(o.common.model), o.common.threads, parse_device(o.common.device)});
  const int64_t context = std::min<int64_t>(o.common.context, engine.model().config().context_length);
  Session session(engine.model(), engine.tokenizer(), context);
  const bool interactive = isatty(STDIN_FILENO);
  if (interactive) std::printf("marlin chat with %s (%s)\n", engine.model().config().name.c_str(), kHelp);

  std::vector<ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  std::string input;
  while (read_message(input, interactive)) {
    if (input.empty()) continue;
    if (input == "/exit" || input == "/quit") break;
    if (input == "/reset") {
      messages.resize(o.system.empty() ? 0 : 1);
      session.reset();
      std::puts("(conversation cleared)");
      continue;
    }
    if (input == "/help") {
      std::puts(kHelp);
      continue;
    }
    messages.push_back({"user", input});
    auto prompt = engine.chat_prompt(messages, true);
    if (int64_t(prompt.size()) + 1 >= context) {
      std::fprintf(stderr, "error: the conversation (%zu tokens) no longer fits the context (%lld); /reset to start over\n",
                   prompt.size(), static_cast<long long>(context));
      messages.pop_back();
      continue;
    }
    auto result = session.generate(prompt, o.common.generation, print_streamed);
    if (result.text.empty() || result.text.back() != '\n') print_streamed("\n");
    messages.push_back({"assistant", result.text});
  }
}

}  // namespace

void register_chat(CLI::App& app) {
  auto options = std::make_shared<ChatOptions>();
  auto* c = app.add_subcommand("chat", "Chat interactively (the conversation is kept; /reset, /exit)");
  add_generate_options(c, options->common);
  c->add_option("--system", options->system, "A system message for the whole conversation");
  c->callback([options] { chat(*options); });
}

}  // namespace marlin::cli
