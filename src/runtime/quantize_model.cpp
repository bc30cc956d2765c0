#include "runtime/quantize_model.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "core/memory_size.h"
#include "model/model.h"
#include "quant/dequant.h"
#include "quant/ggml_repack.h"
#include "quant/hessian.h"
#include "quant/quant_buffers.h"
#include "quant/rtn.h"
#include "quant/trellis_matrix.h"
#include "quant/trellis_quantize.h"
#include "runtime/hessian_budget.h"

namespace marlin {
namespace {

// Source row of each output row for tensors whose rows must be reordered, else empty. GGUF Llama
// files store Q/K rows so that RoPE pairs (i, i + D/2) of a head are adjacent; the Hugging Face
// layout keeps the halves apart: output row r of a head comes from source row 2·(r mod D/2) + r div D/2.
std::vector<int64_t> source_rows(std::string_view name, int64_t rows, const ModelConfig& c) {
  // MLA models (DeepSeek, GLM) pair adjacent values in their Hugging Face layout too: nothing moves.
  if (c.rope.pairing != RopePairing::kAdjacent || c.mla.enabled()) return {};
  const bool qk = name.ends_with("self_attn.q_proj.weight") || name.ends_with("self_attn.k_proj.weight");
  if (!qk) return {};
  const int64_t d = c.head_dim, half = d / 2;
  MARLIN_CHECK(rows % d == 0, "quantize: '{}' has {} rows, not whole heads of {}", name, rows, d);
  std::vector<int64_t> order(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t head = r / d, i = r % d;
    order[size_t(r)] = head * d + (i % half) * 2 + i / half;
  }
  return order;
}

int64_t source_row(const std::vector<int64_t>& order, int64_t r) { return order.empty() ? r : order[size_t(r)]; }

// A trellis tensor's rotation seed, from its name (FNV-1a): the same checkpoint every run. The
// weights the runtime stacks because they read one input (q|k|v, gate|up, Mixtral's w1|w3) take
// the name of the stack's first part, so they share the input rotation and run as one product.
uint64_t trellis_seed(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kStackedWith[] = {
      {".k_proj.weight", ".q_proj.weight"},
      {".v_proj.weight", ".q_proj.weight"},
      {".up_proj.weight", ".gate_proj.weight"},
      {".w3.weight", ".w1.weight"},
  };
  std::string key(name);
  for (const auto& [part, first] : kStackedWith)
    if (name.ends_with(part)) key = std::string(name.substr(0, name.size() - part.size())) + std::string(first);
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : key) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return h;
}

// A trellis layer (quant/trellis_quantize.h) as the tensor format stores it.
QuantBuffers trellis_buffers(const TensorFormat& format, const TrellisLayer& layer) {
  QuantBuffers out = QuantBuffers::allocate(format, layer.rows, layer.cols);
  MARLIN_CHECK(out.codes.size() == layer.codes.size() * 2 && out.scales.size() == layer.row_scales.size() * 2,
               "quantize: a trellis layer of {} words does not fit {} x {} {}", layer.codes.size(), layer.rows,
               layer.cols, format.name());
  for (size_t i = 0; i < layer.codes.size(); ++i) {  // little-endian words
    out.codes[2 * i] = uint8_t(layer.codes[i]);
    out.codes[2 * i + 1] = uint8_t(layer.codes[i] >> 8);
  }
  for (size_t i = 0; i < layer.row_scales.size(); ++i) {
    out.scales[2 * i] = uint8_t(layer.row_scales[i]);
    out.scales[2 * i + 1] = uint8_t(layer.row_scales[i] >> 8);
  }
  out.rotation_seed = layer.seed;
  return out;
}

// rows × cols fp32 values as an f32 tensor.
QuantBuffers f32_buffers(const std::vector<float>& w, int64_t rows, int64_t cols) {
  QuantBuffers out = QuantBuffers::allocate(TensorFormat::parse("f32"), rows, cols);
  std::memcpy(out.codes.data(), w.data(), w.size() * sizeof(float));
  return out;
}

// The whole matrix in fp32, rows in output order.
std::vector<float> dequantize_matrix(const QuantTensor& t, const std::vector<int64_t>& order) {
  std::vector<float> w(static_cast<size_t>(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, source_row(order, r), &w[size_t(r * t.cols)]);
  return w;
}

// The tensor as stored, rows reordered (byte copies: every format stores rows independently).
QuantBuffers permute_rows(const QuantTensor& t, const std::vector<int64_t>& order) {
  QuantBuffers out = QuantBuffers::allocate(t.format, t.rows, t.cols);
  const uint64_t scale_row = out.scales.size() / size_t(t.rows), zero_row = out.zeros.size() / size_t(t.rows);
  const uint64_t meta_row = out.sparse_meta.size() / size_t(t.rows);
  for (int64_t r = 0; r < t.rows; ++r) {
    const uint64_t s = uint64_t(source_row(order, r));
    std::memcpy(&out.codes[size_t(uint64_t(r) * out.code_row_bytes)], t.codes + s * t.code_row_bytes, out.code_row_bytes);
    if (scale_row) std::memcpy(&out.scales[size_t(uint64_t(r) * scale_row)], t.scales + s * scale_row, scale_row);
    if (zero_row) std::memcpy(&out.zeros[size_t(uint64_t(r) * zero_row)], t.zeros + s * zero_row, zero_row);
    if (meta_row) std::memcpy(&out.sparse_meta[size_t(uint64_t(r) * meta_row)], t.sparse_meta + s * meta_row, meta_row);
  }
  if (t.perm) out.perm.assign(t.perm, t.perm + t.cols);
  out.tensor_scale = t.tensor_scale;
  return out;
}

class Quantizer {
 public:
  Quantizer(const ModelSource& source, const QuantizeOptions& options, ThreadPool& pool, const TensorSink& sink,
            const QuantizeProgress& progress, const QuantizeNotice& notice)
      : source_(source), options_(options), pool_(pool), sink_(sink), progress_(progress), notice_(notice),
        names_(source.tensor_names()) {}

  QuantizeReport run() {
    const auto start = std::chrono::steady_clock::now();
    std::set<std::string> calibrated;
    std::unique_ptr<Model> model;
    if (options_.gptq) {
      MARLIN_CHECK(!options_.calibration.empty(), "quantize: GPTQ needs calibration text");
      model = load_model(source_, pool_);
      for (int layer = 0; layer < source_.config().n_layers; ++layer)
        for (const auto& group : model->linear_groups(layer))
          calibrated.insert(group.weights.begin(), group.weights.end());
    }
    for (const auto& name : names_)
      if (!calibrated.count(name)) emit_rtn(name);
    if (model) run_gptq(*model);
    report_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return std::move(report_);
  }

 private:
  QuantTensor stored(const std::string& name) const {
    auto t = source_.tensor(name);
    MARLIN_CHECK(t.has_value(), "quantize: tensor '{}' is listed but missing", name);
    return *t;
  }

  std::optional<TensorFormat> format_for(const std::string& name, int64_t rows) const {
    if (const auto it = options_.tensor_formats.find(name); it != options_.tensor_formats.end()) return it->second;
    return choose_format(name, rows, options_.format, options_.rules);
  }

  void emit(const std::string& name, const QuantTensor& t, double loss = -1) {
    sink_(name, t);
    report_.tensors.push_back({name, t.format, t.rows, t.cols, loss});
    if (progress_) progress_(int64_t(report_.tensors.size()), int64_t(names_.size()));
  }

  // Round to nearest (or keep / repack losslessly) one tensor.
  void emit_rtn(const std::string& name) {
    const QuantTensor t = stored(name);
    const auto order = source_rows(name, t.rows, source_.config());
    const auto format = format_for(name, t.rows);
    if (!format || *format == t.format) {
      if (order.empty()) return emit(name, t);
      return emit(name, permute_rows(t, order).view());
    }
    if (t.format.kind == FormatKind::kGgml && lossless_planar_format(t.format.ggml) == *format)
      return emit(name, permute_rows(repack_ggml(t).view(), order).view());
    MARLIN_CHECK(!format->act_order, "quantize: '{}': act-order ({}) needs GPTQ (--method gptq)", name, format->name());
    const auto w = dequantize_matrix(t, order);
    if (format->kind == FormatKind::kTrellis)
      return emit(name, quantize_trellis_rtn(w.data(), t.rows, t.cols, format->bits, trellis_seed(name), &pool_).view());
    emit(name, quantize_rtn(w.data(), t.rows, t.cols, *format, {}, &pool_).view());
  }

  // GPTQ block by block: each block's linear inputs are collected on the calibration sequences as
  // the already-quantized blocks before it produce them, its linears quantized with the Hessian of
  // their input, and the sequences moved on through the quantized block. A block whose Hessians
  // pass the memory budget runs the sequences once per subset of its groups (plan_passes).
  void run_gptq(Model& model) {
    const ModelConfig& c = model.config();
    const auto passes = plan_passes(model);
    std::vector<std::vector<float>> hidden;
    int64_t longest = 0;
    for (const auto& tokens : options_.calibration) {
      hidden.emplace_back(tokens.size() * size_t(c.d_model));
      model.embed(tokens, hidden.back().data());
      longest = std::max<int64_t>(longest, int64_t(tokens.size()));
    }
    auto cache = model.new_cache(longest);
    GptqOptions gptq = options_.gptq_options;
    gptq.pool = &pool_;
    for (int layer = 0; layer < c.n_layers; ++layer) {
      const auto groups = model.linear_groups(layer);
      // Installed once every group is quantized: each pass must see the block's original weights.
      std::vector<std::pair<std::string, QuantBuffers>> replacements;
      for (const auto& [begin, end] : passes[size_t(layer)]) {
        const auto hessians = collect_hessians(model, layer, groups, begin, end, hidden, *cache);
        for (size_t g = begin; g < end; ++g) {
          const HessianAccumulator& hessian = hessians[g - begin];
          if (hessian.samples() == 0) {  // an expert no calibration token chose: round to nearest
            for (const auto& name : groups[g].weights) emit_rtn(name);
            continue;
          }
          const auto h = hessian.hessian();
          const auto stacked = trellis_stacks(groups[g].weights, h);
          for (const auto& name : groups[g].weights)
            if (auto q = quantize_linear(name, h, gptq, stacked)) replacements.emplace_back(name, std::move(*q));
        }
      }
      // The quantized weights stand in for the originals while the sequences move on through
      // this block (the model never runs it again, so they may go afterwards).
      for (const auto& [name, weight] : replacements) model.replace_weight(name, weight.view());
      for (size_t s = 0; s < hidden.size(); ++s) {
        cache->clear();
        model.run_layer(layer, hidden[s].data(), int64_t(options_.calibration[s].size()), *cache, {});
      }
    }
  }

  // Every block's groups split into passes whose Hessians fit the budget; tells the user the
  // budget, and once what goes past it.
  std::vector<std::vector<HessianPass>> plan_passes(const Model& model) {
    const HessianBudget budget = hessian_budget(options_.hessian_budget, mem_available());
    say("memory budget for a block's Hessians: " + budget.summary);
    std::vector<std::vector<HessianPass>> passes;
    int split_blocks = 0, oversized = 0;
    size_t most_passes = 0;
    uint64_t largest = 0;
    std::string largest_name;
    for (int layer = 0; layer < model.config().n_layers; ++layer) {
      std::vector<uint64_t> bytes;
      for (const auto& group : model.linear_groups(layer)) {
        const int64_t cols = stored(group.weights.front()).cols;
        bytes.push_back(HessianAccumulator::memory_bytes(cols));
        if (bytes.back() <= budget.bytes) continue;
        oversized++;
        if (bytes.back() > largest)
          largest = bytes.back(), largest_name = fmt::format("{} ({} columns)", group.weights.front(), cols);
      }
      passes.push_back(plan_hessian_passes(bytes, budget.bytes));
      split_blocks += passes.back().size() > 1;
      most_passes = std::max(most_passes, passes.back().size());
    }
    if (oversized)
      say(fmt::format("warning: {} of the linear groups need more than the {} budget for their Hessian alone (the "
                      "largest: {}, {}); each is collected in a pass of its own",
                      oversized, format_memory_size(budget.bytes), largest_name, format_memory_size(largest)));
    if (split_blocks)
      say(fmt::format("{} of {} blocks collect their Hessians in several passes over the calibration text (up to {})",
                      split_blocks, passes.size(), most_passes));
    return passes;
  }

  // The Hessians of groups [begin, end) of block `layer`, from the sequences entering it.
  std::vector<HessianAccumulator> collect_hessians(Model& model, int layer, const std::vector<LinearGroup>& groups,
                                                   size_t begin, size_t end,
                                                   const std::vector<std::vector<float>>& hidden, KvCache& cache) {
    std::vector<HessianAccumulator> hessians;
    for (size_t g = begin; g < end; ++g) hessians.emplace_back(stored(groups[g].weights.front()).cols);
    std::vector<float> scratch;
    for (size_t s = 0; s < hidden.size(); ++s) {
      scratch = hidden[s];
      cache.clear();
      model.run_layer(layer, scratch.data(), int64_t(options_.calibration[s].size()), cache,
                      [&](int group, const float* x, int64_t rows, int64_t) {
                        if (size_t(group) >= begin && size_t(group) < end)
                          hessians[size_t(group) - begin].add(x, rows, &pool_);
                      });
    }
    report_.hessian_passes++;
    return hessians;
  }

  // Whether a trellis stack of `bytes` may be held (trellis_stacks); says so once when not.
  bool stack_fits(uint64_t bytes) {
    const std::optional<uint64_t> free = mem_available();
    const std::optional<uint64_t> limit = options_.trellis_stack_budget ? options_.trellis_stack_budget
                                          : free                          ? std::optional<uint64_t>(*free / 2)
                                                                          : std::nullopt;
    if (!limit || bytes <= *limit) return true;
    if (!warned_stack_) {
      say(fmt::format("trellis: linears that read one input quantized one by one where their stack would take more "
                      "than {} ({} for the first); the result is the same",
                      format_memory_size(*limit), format_memory_size(bytes)));
      warned_stack_ = true;
    }
    return false;
  }

  // Whether a tensor stored as `t` is quantized to `format` by the calibrated path rather than kept
  // or repacked.
  static bool requantized(const QuantTensor& t, const std::optional<TensorFormat>& format) {
    return format && *format != t.format && format->quantized() && format->kind != FormatKind::kGgml;
  }

  // The trellis layers of a group's linears (one input, one Hessian) that share a width and a
  // rotation seed with another of them (q, k and v; gate and up): each such set is quantized as
  // one stack (quant/trellis_quantize.h: the same result as one by one, in fewer and larger tile
  // searches), before any of them is written. A set whose stack would pass the memory allowed
  // for it (QuantizeOptions::trellis_stack_budget) is left to be quantized one by one.
  std::map<std::string, TrellisLayer> trellis_stacks(const std::vector<std::string>& names,
                                                     const std::vector<double>& hessian) {
    std::map<std::pair<int, uint64_t>, std::vector<std::string>> sets;
    std::map<std::pair<int, uint64_t>, uint64_t> weights_of;
    for (const auto& name : names) {
      const QuantTensor t = stored(name);
      const auto format = format_for(name, t.rows);
      if (requantized(t, format) && format->kind == FormatKind::kTrellis) {
        sets[{format->bits, trellis_seed(name)}].push_back(name);
        weights_of[{format->bits, trellis_seed(name)}] += uint64_t(t.rows) * uint64_t(t.cols);
      }
    }
    std::map<std::string, TrellisLayer> layers;
    for (const auto& [key, members] : sets) {
      if (members.size() < 2 || !stack_fits(trellis_stack_bytes(weights_of[key]))) continue;
      report_.trellis_stacks++;
      std::vector<std::vector<float>> weights;
      std::vector<TrellisMatrix> stack;
      weights.reserve(members.size());
      int64_t cols = 0;
      for (const auto& name : members) {
        const QuantTensor t = stored(name);
        weights.push_back(dequantize_matrix(t, source_rows(name, t.rows, source_.config())));
        stack.push_back({weights.back().data(), t.rows});
        cols = t.cols;
      }
      auto done = quantize_trellis_stack(stack, cols, hessian, key.first, key.second, trellis_options());
      for (size_t i = 0; i < members.size(); ++i) layers.emplace(members[i], std::move(done[i]));
    }
    return layers;
  }

  // Quantizes one linear with GPTQ (or takes its layer from `stacked`) and writes it; returns what
  // the model is to run once the block is done (the quantized weight, rows in the source's order),
  // or nothing where it keeps the original (a tensor kept, converted or repacked).
  std::optional<QuantBuffers> quantize_linear(const std::string& name, const std::vector<double>& hessian,
                                              const GptqOptions& gptq, const std::map<std::string, TrellisLayer>& stacked) {
    const QuantTensor t = stored(name);
    const auto order = source_rows(name, t.rows, source_.config());
    const auto format = format_for(name, t.rows);
    if (!requantized(t, format)) {
      emit_rtn(name);  // nothing for GPTQ to do
      return std::nullopt;
    }
    if (format->kind == FormatKind::kTrellis) {
      const auto it = stacked.find(name);
      if (it != stacked.end()) return write_trellis(name, *format, it->second, order);
      const auto w = dequantize_matrix(t, order);
      return write_trellis(name, *format,
                           quantize_trellis_layer(w.data(), t.rows, t.cols, hessian, format->bits, trellis_seed(name),
                                                  trellis_options()),
                           order);
    }
    const auto w = dequantize_matrix(t, order);
    GptqResult result = quantize_gptq(w.data(), t.rows, t.cols, *format, hessian, gptq);
    emit(name, result.weights.view(), result.loss);
    return order.empty() ? std::move(result.weights) : permute_rows(result.weights.view(), inverse(order));
  }

  // Rotation, LDLQ and trellis tiles (quant/trellis_quantize.h).
  TrellisQuantOptions trellis_options() {
    TrellisQuantOptions trellis;
    trellis.percdamp = options_.gptq_options.percdamp;
    trellis.pool = &pool_;
    return trellis;
  }

  // Writes a trellis layer. The model goes on with the decoded weights in fp32: a trellis tensor's
  // rows cannot be reordered (its output rotation mixes them), and GGUF sources store Q/K rows in
  // another order than the checkpoint's.
  QuantBuffers write_trellis(const std::string& name, const TensorFormat& format, const TrellisLayer& layer,
                             const std::vector<int64_t>& order) {
    const QuantBuffers stored = trellis_buffers(format, layer);
    emit(name, stored.view(), layer.proxy_loss);
    return f32_buffers(dequantize_matrix(stored.view(), inverse(order)), layer.rows, layer.cols);
  }

  void say(const std::string& message) const {
    if (notice_) notice_(message);
  }

  static std::vector<int64_t> inverse(const std::vector<int64_t>& order) {
    std::vector<int64_t> inv(order.size());
    for (size_t i = 0; i < order.size(); ++i) inv[size_t(order[i])] = int64_t(i);
    return inv;
  }

  const ModelSource& source_;
  const QuantizeOptions& options_;
  ThreadPool& pool_;
  const TensorSink& sink_;
  const QuantizeProgress& progress_;
  const QuantizeNotice& notice_;
  std::vector<std::string> names_;
  QuantizeReport report_;
  bool warned_stack_ = false;  // stack_fits said once that a set goes one by one
};

}  // namespace

QuantizeReport quantize_model(const ModelSource& source, const QuantizeOptions& options, ThreadPool& pool,
                              const TensorSink& sink, const QuantizeProgress& progress,
                              const QuantizeNotice& notice) {
  return Quantizer(source, options, pool, sink, progress, notice).run();
}

}  // namespace marlin
