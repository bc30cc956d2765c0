// marlin: the command-line entry point. Subcommands live in cmd_*.cpp; errors from the library
// arrive as marlin::Error and leave as one line on stderr with a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "core/error.h"

namespace {

// "run, chat, ..." for error messages.
std::string command_names(const CLI::App& app) {
  std::string names;
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names += (names.empty() ? "" : ", ") + sub->get_name();
  return names;
}

int report(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"marlin: run large language models with quantized weights"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  // Subcommands register below; each adds its own options and callback.
  marlin::cli::register_serve(app);
  marlin::cli::register_run(app);
  marlin::cli::register_chat(app);
  marlin::cli::register_bench(app);
  marlin::cli::register_inspect(app);
  marlin::cli::register_tokenize(app);
  marlin::cli::register_perplexity(app);
  marlin::cli::register_compare(app);
  marlin::cli::register_quantize(app);

  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      known = known || sub->check_name(argv[1]);
    if (!known) return report(std::string("unknown command '") + argv[1] + "' (commands: " + command_names(app) + ")");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other error; the usage is one --help away.
    std::string message = e.what();
    if (message == "A subcommand is required") message = "a command is required (" + command_names(app) + ")";
    report(message + " (see --help)");
    return e.get_exit_code() ? e.get_exit_code() : 1;
  } catch (const std::exception& e) {
    return report(e.what());
  }
  return 0;
}
