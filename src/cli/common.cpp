#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "core/error.h"

namespace marlin::cli {
namespace {

constexpr const char* kDefaultModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr const char* kDefaultCorpus = "tests/fixtures/corpus/gnu_manuals.txt";

// The directory holding the marlin executable (build/), via /proc/self/exe.
std::filesystem::path executable_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::current_path() : exe.parent_path();
}

}  // namespace

std::string repository_file(const char* relative) {
  for (const auto& base : {executable_dir().parent_path(), std::filesystem::current_path()}) {
    auto candidate = base / relative;
    if (std::filesystem::exists(candidate)) return candidate.string();
  }
  return (executable_dir().parent_path() / relative).string();
}

std::string default_model_path() { return repository_file(kDefaultModel); }

std::string default_corpus_path() { return repository_file(kDefaultCorpus); }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MARLIN_CHECK(in.good(), "cannot read '{}'", path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  MARLIN_CHECK(!in.bad(), "cannot read '{}'", path);
  return text;
}

std::string resolve_model_path(const std::string& path) {
  if (!path.empty()) {
    MARLIN_CHECK(std::filesystem::exists(path), "model file '{}' does not exist", path);
    return path;
  }
  auto fallback = default_model_path();
  MARLIN_CHECK(std::filesystem::exists(fallback),
               "the default model is missing ({}); fetch it with scripts/setup.sh or pass --model PATH",
               fallback);
  return fallback;
}


void add_device_option(CLI::App* c, std::string& device) {
  c->add_option("-d,--device", device,
                "Where the model runs: cpu, or cuda (the first NVIDIA GPU; weights are uploaded at start)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
}

void add_generate_options(CLI::App* c, GenerateOptions& o) {
  auto& g = o.generation;
  auto& s = g.sampling;
  c->add_option("-m,--model", o.model, "GGUF model file (default: the model scripts/setup.sh fetches)");
  c->add_option("-t,--threads", o.threads, "Worker threads (default: one per core)")->check(CLI::Range(0, 1024));
  add_device_option(c, o.device);
  c->add_option("-c,--ctx", o.context, "Context size in tokens (prompt + answer; capped at the model's)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 20));
  c->add_option("-n,--max-tokens", g.max_tokens, "Most tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  c->add_option("--temperature", s.temperature, "Sampling temperature; 0 is greedy (deterministic)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  c->add_option("--top-k", s.top_k, "Keep the K most likely tokens (0: off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  c->add_option("--top-p", s.top_p, "Keep the smallest set of tokens whose probability reaches P (1: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--min-p", s.min_p, "Drop tokens less likely than P times the most likely one (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--repeat-penalty", s.repetition_penalty, "Penalty for tokens already in the last --repeat-last-n (1: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 100.0));
  c->add_option("--repeat-last-n", s.penalty_last_n, "How many recent tokens the penalties look at (-1: all)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
  c->add_option("--presence-penalty", s.presence_penalty, "Subtract this from tokens already present")
      ->capture_default_str()
      ->check(CLI::Range(-2.0, 2.0));
  c->add_option("--frequency-penalty", s.frequency_penalty, "Subtract this times each token's count so far")
      ->capture_default_str()
      ->check(CLI::Range(-2.0, 2.0));
  c->add_option("--seed", s.seed, "Random seed: the same seed and options give the same text")
      ->each([&o](const std::string&) { o.seed_given = true; });
  c->add_option("--stop", g.stop, "Stop when this text appears (repeatable; not printed)");
}

void finish_generate_options(GenerateOptions& o) {
  if (!o.seed_given) o.generation.sampling.seed = std::random_device{}();
  validate(o.generation.sampling);
}

bool print_streamed(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return true;
}

}  // namespace marlin::cli
