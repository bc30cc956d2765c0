// The sparse MLP's grouped path (cuda_experts.h: steps of more than kDeviceRows tokens with tiled
// experts): group_slots against a host stable sort, and whole layers (route, group, grouped
// gate|up, SwiGLU, grouped down, combine) against a double-precision reference on the CPU from the
// same quantized weights, routed by the CPU's rule (backend/cpu/moe.h); and the same layers in
// decode steps, which take the device-routed path.
//
// Two checks of every output. (1) A first-order bound of what fp16 does on the GPU, per value
// (u = 2^-11, the unit roundoff of fp16; f = 2^-24, of fp32): every dequantized weight is rounded
// once to fp16 (relative error ≤ u) and every product is an fp32 sum of K terms (≤ K·f of the sum
// of magnitudes), so a product Σ w·x errs by (u + K·f)·Σ|w·x| plus u of its own value when it is
// stored as fp16. The errors of gate and up pass through SwiGLU (|silu'| ≤ 1.1) into the hidden
// values, those through the down product (Σ|w_down|·error), and the slots' weights (fp32 routing,
// within (8 + n + k)·f relative, as test_moe_ops.cpp checks) into the weighted sum, which is
// rounded once. This worst case grows loose at wide layers, so (2) the flash-attention rule: the
// largest and the rms error against the exact (double) result stay within twice those of the same
// fp16/fp32 arithmetic done on the CPU, which differs from the GPU only in the order of fp32 sums.
// A slot of the wrong expert or token misses by the size of the value itself.
#include <gtest/gtest.h>

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "backend/cpu/moe.h"
#include "backend/cuda/cuda_experts.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/tiled_gemm.h"
#include "core/half.h"
#include "device_buffer.h"
#include "moe_test_layer.h"
#include "quant/dequant.h"
#include "test_util.h"

namespace marlin::test {
namespace {

constexpr double kU = 0x1p-11;  // fp16 unit roundoff
constexpr double kF = 0x1p-24;  // fp32 unit roundoff

// group_slots against a stable counting sort on the host.
void check_grouping(int slots, int n_experts, int chunk, std::mt19937& rng, int only_experts) {
  SCOPED_TRACE(testing::Message() << slots << " slots, " << n_experts << " experts, chunk " << chunk);
  std::uniform_int_distribution<int> pick(0, only_experts - 1);
  std::vector<int32_t> ids(static_cast<size_t>(slots));
  for (auto& id : ids) id = pick(rng) * (n_experts / only_experts);
  DeviceBuffer<int32_t> dids(ids), order(ids.size()), offsets(size_t(2 * (n_experts + 1)));
  cuda::group_slots(dids.get(), slots, n_experts, chunk, order.get(), offsets.get(), offsets.get() + n_experts + 1,
                    nullptr);
  const std::vector<int32_t> got_order = order.download(), got_offsets = offsets.download();
  std::vector<int32_t> want_order, begin(size_t(n_experts) + 1), chunks(size_t(n_experts) + 1);
  for (int e = 0; e < n_experts; ++e) {
    begin[size_t(e)] = int32_t(want_order.size());
    for (int s = 0; s < slots; ++s)
      if (ids[size_t(s)] == e) want_order.push_back(s);
    const int32_t n = int32_t(want_order.size()) - begin[size_t(e)];
    chunks[size_t(e) + 1] = chunks[size_t(e)] + (n + chunk - 1) / chunk;
  }
  begin[size_t(n_experts)] = slots;
  EXPECT_EQ(got_order, want_order);
  EXPECT_EQ(std::vector<int32_t>(got_offsets.begin(), got_offsets.begin() + n_experts + 1), begin);
  EXPECT_EQ(std::vector<int32_t>(got_offsets.begin() + n_experts + 1, got_offsets.end()), chunks);
}

TEST(CudaMoeGrouped, GroupSlotsIsAStableSortByExpert) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(21);
  check_grouping(1, 8, 32, rng, 8);
  check_grouping(31, 8, 32, rng, 8);
  check_grouping(1000, 128, 32, rng, 128);
  check_grouping(1000, 128, 32, rng, 4);  // most experts without slots
  check_grouping(16384, 256, 32, rng, 256);
  check_grouping(16384, 128, 32, rng, 1);  // every slot to expert 0
  check_grouping(4097, 200, 7, rng, 200);
}

std::vector<float> dequantized(const QuantTensor& t) {
  std::vector<float> out(size_t(t.rows * t.cols));
  for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, out.data() + r * t.cols);
  return out;
}

float round_half(double v) { return fp16_to_fp32(fp32_to_fp16(float(v))); }

// The layer's output for every token, exactly (double) and as the GPU rounds it (`emulated`: fp16
// weights, fp32 sums, fp16 gate|up, SwiGLU and down outputs, the slots summed in slot order in
// fp32 and rounded once), and the first-order bound of the GPU's error (see the top).
struct Reference {
  std::vector<double> exact, tolerance;
  std::vector<float> emulated;
};

Reference reference(const Layer& l, const std::vector<float>& h, const std::vector<float>& logits, int64_t rows,
                    int routed, const MoeRouting& routing, const std::vector<float>& score_bias) {
  const int n_experts = int(l.experts.size()), k = routing.top_k + routing.n_shared;
  const int64_t dm = l.d_model, df = l.d_ffn;
  std::vector<cpu::ExpertChoice> choices(size_t(rows * k));
  for (int64_t t = 0; t < rows; ++t) {
    cpu::route_token(&logits[size_t(t * routed)], score_bias.empty() ? nullptr : score_bias.data(), routed, routing,
                     &choices[size_t(t * k)]);
    for (int j = 0; j < routing.n_shared; ++j) choices[size_t(t * k + routing.top_k + j)] = {routed + j, 1.0f};
  }
  Reference ref;
  ref.exact.assign(size_t(rows * dm), 0.0);
  ref.tolerance.assign(size_t(rows * dm), 0.0);
  std::vector<double> magnitude(size_t(rows * dm), 0.0);  // Σ w·|y|, for the sum's own rounding
  std::vector<float> slot_y(size_t(rows * k * dm));       // the emulated down outputs, per slot
  std::vector<double> hid(static_cast<size_t>(df)), hid_err(static_cast<size_t>(df));
  std::vector<float> hid16(static_cast<size_t>(df));
  for (int e = 0; e < n_experts; ++e) {
    std::vector<int64_t> slots;
    for (int64_t s = 0; s < rows * k; ++s)
      if (choices[size_t(s)].expert == e) slots.push_back(s);
    if (slots.empty()) continue;
    const std::vector<float> wg = dequantized(l.experts[size_t(e)].gate), wu = dequantized(l.experts[size_t(e)].up),
                             wd = dequantized(l.experts[size_t(e)].down);
    std::vector<float> wg16(wg), wu16(wu), wd16(wd);
    for (auto* w : {&wg16, &wu16, &wd16})
      for (float& v : *w) v = round_half(v);
    for (const int64_t s : slots) {
      const float* x = &h[size_t(s / k * dm)];
      for (int64_t r = 0; r < df; ++r) {
        double sg = 0, su = 0, ag = 0, au = 0;
        float g16 = 0, u16 = 0;
        for (int64_t c = 0; c < dm; ++c) {
          const size_t at = size_t(r * dm + c);
          sg += double(wg[at]) * x[c];
          su += double(wu[at]) * x[c];
          ag += std::fabs(double(wg[at]) * x[c]);
          au += std::fabs(double(wu[at]) * x[c]);
          g16 += wg16[at] * x[c];
          u16 += wu16[at] * x[c];
        }
        const double eg = (kU + double(dm) * kF) * ag + kU * std::fabs(sg) + kF;
        const double eu = (kU + double(dm) * kF) * au + kU * std::fabs(su) + kF;
        const double silu = sg / (1 + std::exp(-sg));
        hid[size_t(r)] = silu * su;
        hid_err[size_t(r)] = 1.1 * eg * std::fabs(su) + std::fabs(silu) * eu + 1.1 * eg * eu +
                             (kU + 8 * kF) * std::fabs(hid[size_t(r)]) + kF;
        g16 = round_half(g16), u16 = round_half(u16);
        hid16[size_t(r)] = round_half(g16 / (1.0f + std::exp(-g16)) * u16);
      }
      const double w = choices[size_t(s)].weight;
      const double w_err = (8 + n_experts + k) * kF * w;
      const int64_t t = s / k;
      for (int64_t i = 0; i < dm; ++i) {
        double y = 0, ay = 0, ey = 0;
        float y16 = 0;
        for (int64_t j = 0; j < df; ++j) {
          const double wij = wd[size_t(i * df + j)];
          y += wij * hid[size_t(j)];
          ay += std::fabs(wij * hid[size_t(j)]);
          ey += std::fabs(wij) * hid_err[size_t(j)];
          y16 += wd16[size_t(i * df + j)] * hid16[size_t(j)];
        }
        ey += (kU + double(df) * kF) * ay + kU * std::fabs(y) + kF;
        ref.exact[size_t(t * dm + i)] += w * y;
        ref.tolerance[size_t(t * dm + i)] += w * ey + w_err * (std::fabs(y) + ey);
        magnitude[size_t(t * dm + i)] += w * (std::fabs(y) + ey);
        slot_y[size_t(s * dm + i)] = round_half(y16);
      }
    }
  }
  ref.emulated.assign(size_t(rows * dm), 0.0f);
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t i = 0; i < dm; ++i) {
      float sum = 0;
      for (int j = 0; j < k; ++j) sum += choices[size_t(t * k + j)].weight * slot_y[size_t((t * k + j) * dm + i)];
      ref.emulated[size_t(t * dm + i)] = round_half(sum);
    }
  for (size_t i = 0; i < ref.exact.size(); ++i)
    ref.tolerance[i] += double(k) * kF * magnitude[i] + kU * std::fabs(ref.exact[i]) + kF;
  return ref;
}

// The largest and the rms error of `got` against the exact values.
std::pair<double, double> max_and_rms_error(const std::vector<float>& got, const std::vector<double>& exact) {
  double worst = 0, sum = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - exact[i]);
    worst = std::max(worst, err);
    sum += err * err;
  }
  return {worst, std::sqrt(sum / double(got.size()))};
}

// The experts' context as the backend sets it up: the default stream, a cuBLAS handle, and room
// for steps of up to 2048 tokens (the CUDA backend's most per step).
struct Context {
  cuda::LinearContext ctx;
  Context() {
    EXPECT_EQ(cublasCreate(&ctx.cublas), CUBLAS_STATUS_SUCCESS);
    ctx.max_rows = 2048;
  }
  ~Context() { cublasDestroy(ctx.cublas); }
};

// Logits that send every token's first choice to expert 0 (same_expert), or only ever choose
// among the first `allowed` experts.
enum class Skew { kNone, kSameExpert, kHalfUnused };

// prompt_rows > 0: a step of that many tokens runs first on the same scratch (a prompt before
// the checked step, as in a session). score_bias: the routers' correction bias, or none.
void check_layer(const Layer& l, int64_t rows, const MoeRouting& routing, Skew skew, uint32_t seed,
                 int64_t prompt_rows = 0, const std::vector<float>& score_bias = {}) {
  const int n_experts = int(l.experts.size()), routed = n_experts - routing.n_shared;
  SCOPED_TRACE(testing::Message() << rows << " rows, " << n_experts << " experts (" << routing.n_shared
                                  << " shared), top " << routing.top_k << ", d_model " << l.d_model << ", d_ffn "
                                  << l.d_ffn << ", skew " << int(skew));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f), logit(-4.0f, 4.0f);
  std::vector<uint16_t> h16(size_t(rows * l.d_model));
  std::vector<float> h(h16.size()), logits(size_t(rows * routed));
  for (size_t i = 0; i < h16.size(); ++i) {
    h16[i] = fp32_to_fp16(dist(rng));
    h[i] = fp16_to_fp32(h16[i]);
  }
  for (int64_t t = 0; t < rows; ++t)
    for (int e = 0; e < routed; ++e) {
      float& v = logits[size_t(t * routed + e)];
      v = logit(rng);
      if (skew == Skew::kSameExpert && e == 0) v = 12.0f;
      if (skew == Skew::kHalfUnused && e >= routed / 2) v = -30.0f;
    }
  const Reference ref = reference(l, h, logits, rows, routed, routing, score_bias);

  Context c;
  auto experts = cuda::CudaExperts::upload(l.experts, score_bias, c.ctx);
  if (rows > cuda::CudaExperts::kDeviceRows) {
    ASSERT_TRUE(experts->grouped()) << "these experts should take the grouped path";
    ASSERT_FALSE(experts->device_routed(rows));
  } else {
    ASSERT_TRUE(experts->device_routed(rows)) << "a decode step should be routed on the device";
  }
  cuda::MoeScratch scratch;
  if (prompt_rows > 0) {
    DeviceBuffer<uint16_t> ph(std::vector<uint16_t>(size_t(prompt_rows * l.d_model), fp32_to_fp16(0.5f))),
        pout(size_t(prompt_rows * l.d_model));
    DeviceBuffer<float> plogits(std::vector<float>(size_t(prompt_rows * routed), 0.0f));
    experts->forward(as_half(ph), prompt_rows, plogits.get(), routing, as_half(pout), c.ctx, scratch);
  }
  DeviceBuffer<uint16_t> dh(h16), dout(size_t(rows * l.d_model));
  DeviceBuffer<float> dlogits(logits);
  experts->forward(as_half(dh), rows, dlogits.get(), routing, as_half(dout), c.ctx, scratch);
  cuda_ok(cudaDeviceSynchronize(), "grouped moe");
  const std::vector<float> got = to_float(dout.download());
  expect_within(got, ref.exact, [&](size_t i) { return ref.tolerance[i]; }, "moe output");
  // Against the same arithmetic on the CPU (which differs only in the order of fp32 sums): at most
  // twice its largest and its rms error.
  const auto [worst, rms] = max_and_rms_error(got, ref.exact);
  const auto [emulated_worst, emulated_rms] = max_and_rms_error(ref.emulated, ref.exact);
  EXPECT_LE(worst, 2 * emulated_worst) << "largest error";
  EXPECT_LE(rms, 2 * emulated_rms) << "rms error";

  // Deterministic: a second run gives the same bits.
  DeviceBuffer<uint16_t> again(size_t(rows * l.d_model));
  experts->forward(as_half(dh), rows, dlogits.get(), routing, as_half(again), c.ctx, scratch);
  EXPECT_EQ(again.download(), dout.download()) << "a second run differs";
}

// An environment variable set for one scope (an upload option), unset at its end.
struct ScopedEnv {
  const char* name;
  ScopedEnv(const char* variable, const char* value) : name(variable) { setenv(variable, value, 1); }
  ~ScopedEnv() { unsetenv(name); }
};

// A decode step in two launches, with routing, SwiGLU and the combination inside the routed
// products (MARLIN_MOE_ONE_LAUNCH=0 at upload), gives the bits of the launches that do them on
// their own (MARLIN_MOE_FUSED=0). (The one-launch step may split K otherwise: check_layer holds
// it to the reference.)
void check_fused_step_bits(const Layer& l, int64_t rows, const MoeRouting& routing, uint32_t seed,
                           const std::vector<float>& score_bias = {}) {
  SCOPED_TRACE(testing::Message() << rows << " rows, fused against separate launches");
  const int routed = int(l.experts.size()) - routing.n_shared;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> logit(-4.0f, 4.0f);
  std::vector<float> logits(size_t(rows * routed));
  for (float& v : logits) v = logit(rng);
  DeviceBuffer<uint16_t> dh(random_halves(size_t(rows * l.d_model), -1.0f, 1.0f, rng));
  DeviceBuffer<float> dlogits(logits);
  Context c;
  std::unique_ptr<cuda::CudaExperts> fused, separate;
  {
    const ScopedEnv two("MARLIN_MOE_ONE_LAUNCH", "0");
    fused = cuda::CudaExperts::upload(l.experts, score_bias, c.ctx);
  }
  {
    const ScopedEnv own("MARLIN_MOE_FUSED", "0");
    separate = cuda::CudaExperts::upload(l.experts, score_bias, c.ctx);
  }
  ASSERT_TRUE(fused->device_routed(rows));
  ASSERT_FALSE(fused->one_launch(int(rows) * (routing.top_k + routing.n_shared)));
  cuda::MoeScratch s1, s2;
  DeviceBuffer<uint16_t> out1(size_t(rows * l.d_model)), out2(size_t(rows * l.d_model));
  fused->forward(as_half(dh), rows, dlogits.get(), routing, as_half(out1), c.ctx, s1);
  separate->forward(as_half(dh), rows, dlogits.get(), routing, as_half(out2), c.ctx, s2);
  cuda_ok(cudaDeviceSynchronize(), "moe");
  EXPECT_EQ(out1.download(), out2.download());
}

bool grouped_kernels_run() { return cuda::tiled_gemm_supported(); }

// 8 experts top-2 and 128 experts top-8 (d_model 256, d_ffn 128) in int4 and int8, at each of
// `row_counts`; `many_skew` for the 128-expert layer.
void check_small_layers(std::initializer_list<int64_t> row_counts, Skew many_skew, uint64_t seed, ThreadPool& pool) {
  for (const char* name : {"int4-g128", "int8-g128"}) {
    SCOPED_TRACE(name);
    const TensorFormat format = TensorFormat::parse(name);
    const Layer eight = make_layer(8, 256, 128, format, seed, pool);
    const Layer many = make_layer(128, 256, 128, format, seed + 100, pool);
    for (const int64_t rows : row_counts) {
      check_layer(eight, rows, {2, true, RouterScoring::kSoftmax}, Skew::kNone, uint32_t(seed + 1));
      check_layer(many, rows, {8, true, RouterScoring::kSoftmax}, many_skew, uint32_t(seed + 2));
    }
  }
}

TEST(CudaMoeGrouped, SmallLayersMatchCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(4);
  check_small_layers({9, 64, 300}, Skew::kNone, 100, pool);
}

// Every grouped step on wide chunks (64 positions × 256 weight rows, wgmma; MARLIN_MOE_WGMMA=1 at
// upload), which the pick gives only to steps whose experts average many rows: chunks of a few
// rows, experts spanning several chunks, a shared expert, int8. (A padded last k-step cannot occur
// there: a d_ffn that is not a multiple of 128 gives a gate|up whose rows are not a multiple of 256.)
TEST(CudaMoeGrouped, WideChunksMatchCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(4);
  const ScopedEnv wide("MARLIN_MOE_WGMMA", "1");
  check_small_layers({9, 300}, Skew::kSameExpert, 800, pool);
  const Layer shared = make_layer(9, 256, 128, TensorFormat::parse("int8-g128"), 900, pool);
  MoeRouting routing{2, true, RouterScoring::kSoftmax};
  routing.n_shared = 1;
  check_layer(shared, 130, routing, Skew::kNone, 16);
  Context c;
  EXPECT_TRUE(cuda::CudaExperts::upload(shared.experts, {}, c.ctx)->wide_chunks());
  const Layer padded = make_layer(8, 256, 192, TensorFormat::parse("int4-g128"), 950, pool);
  EXPECT_FALSE(cuda::CudaExperts::upload(padded.experts, {}, c.ctx)->wide_chunks()) << "gate|up rows 384";
}

// Decode steps (at most kDeviceRows tokens): the device-routed path, whose routed products finish
// SwiGLU and the slot combination in their last blocks (tiled_gemm.h's RoutedEpilogue). Its second
// run (check_layer's determinism check) also shows that the epilogues' counters were left at zero.
TEST(CudaMoeGrouped, DeviceRoutedStepsMatchCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(4);
  check_small_layers({1, 3, 8}, Skew::kSameExpert, 700, pool);
  {
    const ScopedEnv two("MARLIN_MOE_ONE_LAUNCH", "0");
    check_small_layers({1, 8}, Skew::kSameExpert, 750, pool);
  }
  const Layer shared = make_layer(9, 256, 192, TensorFormat::parse("int4-g128"), 900, pool);
  MoeRouting routing{2, true, RouterScoring::kSoftmax};
  routing.n_shared = 1;
  check_layer(shared, 5, routing, Skew::kNone, 11);
  // After a prompt whose grouped step grew the slot arrays beyond a decode step's needs.
  const Layer many = make_layer(128, 256, 128, TensorFormat::parse("int4-g128"), 1000, pool);
  check_layer(many, 1, {8, true, RouterScoring::kSoftmax}, Skew::kNone, 12, 512);
  // DeepSeek-V3's rule, which the gate|up product's routing prologue follows as moe_route does:
  // sigmoid scores plus a correction bias, 8 groups of which the best 3 by top-two sum, top 6,
  // renormalized and scaled, one shared expert.
  const Layer deepseek = make_layer(65, 256, 128, TensorFormat::parse("int4-g128"), 1100, pool);
  MoeRouting grouped{6, true, RouterScoring::kSigmoid};
  grouped.n_groups = 8;
  grouped.top_groups = 3;
  grouped.group_score = GroupScore::kTopTwoSum;
  grouped.scale = 2.5f;
  grouped.n_shared = 1;
  std::vector<float> bias(64);
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> small(-0.5f, 0.5f);
  for (float& b : bias) b = small(rng);
  for (const int64_t rows : {1, 4}) {
    check_layer(deepseek, rows, grouped, Skew::kNone, 14, 0, bias);
    check_fused_step_bits(deepseek, rows, grouped, 15, bias);
  }
}

// The one-launch decode step (tiled_gemm.h's moe_decode) where its blocks split each slot's rows
// unevenly, where a slot's gate|up share spans several passes of the block's warps (d_ffn 1,536:
// 96 strips to share), with fp4 experts (row multipliers after the tiles), int8 and zero points,
// with a shared expert, and with weights staged in shared memory or streamed.
TEST(CudaMoeGrouped, OneLaunchStepsMatchCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(4);
  Context c;
  const Layer wide = make_layer(16, 256, 1536, TensorFormat::parse("int4-g128"), 1200, pool);
  ASSERT_TRUE(cuda::CudaExperts::upload(wide.experts, {}, c.ctx)->one_launch(2));
  check_layer(wide, 1, {2, true, RouterScoring::kSoftmax}, Skew::kNone, 16);
  check_layer(wide, 7, {2, true, RouterScoring::kSoftmax}, Skew::kNone, 17);
  MoeRouting routing{3, true, RouterScoring::kSoftmax};
  routing.n_shared = 1;
  const Layer rows_scaled = make_layer(12, 320, 192, TensorFormat::parse("nvfp4"), 1300, pool);
  ASSERT_TRUE(cuda::CudaExperts::upload(rows_scaled.experts, {}, c.ctx)->one_launch(4));
  check_layer(rows_scaled, 1, routing, Skew::kNone, 18);
  check_layer(rows_scaled, 5, routing, Skew::kSameExpert, 19);
  const Layer int8 = make_layer(12, 320, 192, TensorFormat::parse("int8-g64"), 1350, pool);
  check_layer(int8, 3, routing, Skew::kNone, 21);
  const Layer zeros = make_layer(8, 256, 128, TensorFormat::parse("int4-g64-asym"), 1400, pool);
  ASSERT_TRUE(cuda::CudaExperts::upload(zeros.experts, {}, c.ctx)->one_launch(2));
  check_layer(zeros, 2, {2, false, RouterScoring::kSoftmax}, Skew::kNone, 20);
  // Shares too large for shared memory (half a megabyte of gate|up a block at 8 tokens): the
  // weights stream from global memory instead of being staged.
  const Layer deep = make_layer(4, 4096, 1024, TensorFormat::parse("int4-g128"), 1500, pool);
  check_layer(deep, 8, {2, true, RouterScoring::kSoftmax}, Skew::kNone, 22);
  const Layer deep_zeros = make_layer(4, 4096, 1024, TensorFormat::parse("int4-g32-asym"), 1600, pool);
  check_layer(deep_zeros, 6, {2, true, RouterScoring::kSoftmax}, Skew::kNone, 23);
}

// Every token's first choice is the same expert (its rows span many chunks), and half the
// experts get no rows at all.
TEST(CudaMoeGrouped, SkewedRoutingMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(4);
  const Layer eight = make_layer(8, 256, 128, TensorFormat::parse("int4-g128"), 300, pool);
  const Layer many = make_layer(128, 256, 128, TensorFormat::parse("int4-g128"), 400, pool);
  for (const int64_t rows : {9, 300}) {
    check_layer(eight, rows, {2, true, RouterScoring::kSoftmax}, Skew::kSameExpert, 3);
    check_layer(many, rows, {8, false, RouterScoring::kSoftmax}, Skew::kSameExpert, 4);
    check_layer(eight, rows, {2, true, RouterScoring::kSoftmax}, Skew::kHalfUnused, 5);
    check_layer(many, rows, {8, true, RouterScoring::kSoftmax}, Skew::kHalfUnused, 6);
  }
}

// A shared expert (one more slot per token, weight 1), and a d_ffn that is not a multiple of 128
// (the down product's last k-step is half padding).
TEST(CudaMoeGrouped, SharedExpertAndPaddedKMatchCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(4);
  const Layer layer = make_layer(9, 256, 192, TensorFormat::parse("int4-g128"), 500, pool);
  MoeRouting routing{2, true, RouterScoring::kSoftmax};
  routing.n_shared = 1;
  check_layer(layer, 64, routing, Skew::kNone, 7);
  const Layer padded = make_layer(8, 256, 192, TensorFormat::parse("int8-g128"), 600, pool);
  check_layer(padded, 33, {2, false, RouterScoring::kSoftmax}, Skew::kNone, 8);
}

// Qwen3-30B-A3B's expert shape: d_model 2048, d_ffn 768, 128 experts, 8 per token (on a GPU of
// about 132 SMs for the two decode cases).
TEST(CudaMoeGrouped, Qwen3ShapeMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  if (!grouped_kernels_run()) GTEST_SKIP() << "the tiled kernels need sm_90";
  ThreadPool pool(8);
  const Layer layer = make_layer(128, 2048, 768, TensorFormat::parse("int4-g128"), 700, pool);
  check_layer(layer, 64, {8, true, RouterScoring::kSoftmax}, Skew::kNone, 9);
  // Decode steps: one token's routed launch fits one wave of blocks and routes in its prologue;
  // eight tokens' does not, and moe_route runs first.
  for (const int64_t rows : {1, 8}) {
    check_layer(layer, rows, {8, true, RouterScoring::kSoftmax}, Skew::kNone, 10);
    check_fused_step_bits(layer, rows, {8, true, RouterScoring::kSoftmax}, 11);
  }
  Context c;
  EXPECT_TRUE(cuda::CudaExperts::upload(layer.experts, {}, c.ctx)->one_launch(8)) << "one token's step, one launch";
}

}  // namespace
}  // namespace marlin::test
