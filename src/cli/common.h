// Helpers shared by the subcommands.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>

#include "runtime/session.h"

namespace marlin::cli {

// The model setup.sh fetches, relative to the repository (resolved from the executable's path).
std::string default_model_path();

// `path` when given, else the default model; throws marlin::Error saying how to fetch the
// default model when it is missing.
std::string resolve_model_path(const std::string& path);


// A file of the repository (`relative` to its root, found from the executable's path or the
// working directory), e.g. the evaluation text tests/fixtures/corpus/gnu_manuals.txt.
std::string repository_file(const char* relative);
std::string default_corpus_path();

// The whole contents of a file; marlin::Error naming the path when it cannot be read.
std::string read_text_file(const std::string& path);

// Options every generating command shares.
struct GenerateOptions {
  std::string model;
  int threads = 0;
  std::string device = "cpu";
  int context = 4096;
  GenerationParams generation;
  bool seed_given = false;
};

// Adds --device (cpu or cuda) to a subcommand.
void add_device_option(CLI::App* command, std::string& device);

// Adds --model, --threads, --device, --ctx, sampling and length options to a subcommand.
void add_generate_options(CLI::App* command, GenerateOptions& options);

// Fills in a random seed when none was given and checks the sampling parameters.
void finish_generate_options(GenerateOptions& options);

// Prints text to stdout immediately (for streaming).
bool print_streamed(std::string_view text);

}  // namespace marlin::cli
