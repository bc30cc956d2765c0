// Each subcommand lives in its own cmd_<name>.cpp and registers itself on the app.
#pragma once

#include <CLI/CLI.hpp>

namespace marlin::cli {

void register_run(CLI::App& app);
void register_chat(CLI::App& app);
void register_inspect(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_bench(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_compare(CLI::App& app);
void register_quantize(CLI::App& app);
void register_serve(CLI::App& app);

}  // namespace marlin::cli
