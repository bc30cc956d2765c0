// marlin: the command-line entry point. Subcommands live in cmd_*.cpp; errors from the library
// arrive as marlin::Error and leave as one line on stderr with a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"marlin: run large language models with quantized weights"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  // Subcommands register below; each adds its own options and callback.
  marlin::cli::register_run(app);
  marlin::cli::register_chat(app);
  marlin::cli::register_bench(app);
  marlin::cli::register_inspect(app);
  marlin::cli::register_tokenize(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const marlin::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
