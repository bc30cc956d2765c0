// Reference logits written by tools/make_llama_fixtures.py (transformers, float64), and the
// distance of a float32 transformers run from them, which sets the tolerance.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace marlin::testing {

struct ReferenceLogits {
  std::vector<int32_t> tokens;
  int positions = 0;  // rows of logits: every position, or only the last
  int vocab = 0;
  double fp32_error = 0;
  std::vector<int> argmax;
  std::vector<double> logits;  // positions × vocab
  nlohmann::json meta;

  const double* row(int i) const { return logits.data() + size_t(i) * size_t(vocab); }
};

inline ReferenceLogits load_reference(const std::string& dir, const std::string& name) {
  ReferenceLogits r;
  std::ifstream meta_file(dir + "/" + name + ".json");
  r.meta = nlohmann::json::parse(meta_file);
  r.tokens = r.meta["tokens"].get<std::vector<int32_t>>();
  r.positions = r.meta["positions"].get<int>();
  r.vocab = r.meta["vocab"].get<int>();
  r.fp32_error = r.meta["fp32_max_abs_error"].get<double>();
  r.argmax = r.meta["argmax"].get<std::vector<int>>();
  r.logits.resize(size_t(r.positions) * size_t(r.vocab));
  std::ifstream data(dir + "/" + name + ".logits.f64", std::ios::binary);
  data.read(reinterpret_cast<char*>(r.logits.data()), std::streamsize(r.logits.size() * sizeof(double)));
  if (!data) r.logits.clear();
  return r;
}

}  // namespace marlin::testing
