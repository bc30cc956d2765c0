// Conformance of attention_prefill and attention_decode with a double-precision reference over a
// paged cache with random, non-identity block tables. Everything the kernels must not read (the
// qkv rows' k/v parts, unused pages, positions past a sequence's end) is NaN, so a stray read
// shows up as a NaN in the output.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "attention_reference.h"
#include "backend/cuda/ops.h"
#include "device_buffer.h"
#include "test_util.h"

namespace marlin::test {
namespace {

cuda::AttentionGeometry geometry(int n_heads, int n_kv_heads, int head_dim, int page_size) {
  cuda::AttentionGeometry g;
  g.n_heads = n_heads;
  g.n_kv_heads = n_kv_heads;
  g.head_dim = head_dim;
  g.rotary_dim = head_dim;
  g.page_size = page_size;
  return g;
}

// qkv rows with random queries in [-q_range, q_range] and NaN keys/values.
std::vector<uint16_t> random_queries(int rows, const cuda::AttentionGeometry& g, float q_range, std::mt19937& rng) {
  const size_t row_len = size_t(g.n_heads + 2 * g.n_kv_heads) * size_t(g.head_dim);
  std::vector<uint16_t> qkv(size_t(rows) * row_len, kPoison);
  std::uniform_real_distribution<float> dist(-q_range, q_range);
  for (int t = 0; t < rows; ++t)
    for (size_t i = 0; i < size_t(g.n_heads * g.head_dim); ++i) qkv[size_t(t) * row_len + i] = fp32_to_fp16(dist(rng));
  return qkv;
}

struct PrefillCase {
  int n_heads, n_kv_heads, head_dim, page_size, rows, pos0;
  float q_range = 1.0f;
  float scale = 0;  // 0: 1/sqrt(head_dim)
  int window = 0;   // sliding window (0: none)
};

// The first key a query at position `pos` sees.
int64_t window_first(int64_t pos, int window) { return window > 0 ? std::max<int64_t>(0, pos + 1 - window) : 0; }

void check_prefill(const PrefillCase& c) {
  SCOPED_TRACE(testing::Message() << "heads " << c.n_heads << "/" << c.n_kv_heads << " hd " << c.head_dim << " page "
                                  << c.page_size << " rows " << c.rows << " pos0 " << c.pos0 << " window " << c.window);
  cuda::AttentionGeometry g = geometry(c.n_heads, c.n_kv_heads, c.head_dim, c.page_size);
  g.window = c.window;
  const float scale = c.scale != 0 ? c.scale : 1.0f / std::sqrt(float(c.head_dim));
  const int64_t ctx = int64_t(c.pos0) + c.rows;
  const int table_len = int((ctx + c.page_size - 1) / c.page_size);
  std::mt19937 rng(uint32_t(c.rows * 131 + c.pos0 + c.head_dim));
  HostPagedCache cache(c.n_kv_heads, c.head_dim, c.page_size, table_len + 4, rng);
  const std::vector<int32_t> table = cache.add_sequence(ctx, table_len, rng);
  const std::vector<uint16_t> qkv = random_queries(c.rows, g, c.q_range, rng);

  DeviceBuffer<uint16_t> dqkv(qkv), dkeys(cache.keys), dvalues(cache.values),
      dout(std::vector<uint16_t>(size_t(c.rows) * size_t(c.n_heads * c.head_dim), kPoison));
  DeviceBuffer<int32_t> dtable(table);
  cuda::attention_prefill(as_half(dqkv), c.rows, c.pos0, dtable.get(), g, {as_half(dkeys), as_half(dvalues)}, scale,
                          as_half(dout), nullptr);
  const std::vector<float> got = to_float(dout.download());

  std::vector<double> ref, tol;
  const size_t row_len = size_t(c.n_heads + 2 * c.n_kv_heads) * size_t(c.head_dim);
  const std::vector<float> q = to_float(qkv);
  for (int t = 0; t < c.rows; ++t)
    for (int h = 0; h < c.n_heads; ++h) {
      const ReferenceHead r = reference_attention(cache, table, h / (c.n_heads / c.n_kv_heads),
                                                  q.data() + size_t(t) * row_len + size_t(h * c.head_dim),
                                                  int64_t(c.pos0) + t + 1, scale, window_first(c.pos0 + t, c.window));
      ref.insert(ref.end(), r.out.begin(), r.out.end());
      tol.insert(tol.end(), r.tolerance.begin(), r.tolerance.end());
    }
  expect_within(got, ref, [&](size_t i) { return tol[i]; }, "attention_prefill");
}

TEST(CudaAttention, PrefillSmall) {
  MARLIN_REQUIRE_GPU();
  check_prefill({4, 4, 64, 16, 1, 0});
  check_prefill({6, 2, 64, 16, 77, 0});         // GQA group 3, rows not a multiple of the tile
  check_prefill({8, 2, 128, 32, 130, 45});      // group 4, pos0 > 0 inside a page
  check_prefill({4, 1, 256, 64, 70, 10});       // head_dim 256, one KV head
  check_prefill({2, 2, 128, 64, 64, 1000});     // a short prompt after a long context
  check_prefill({3, 3, 64, 16, 128, 0, 4.0f});  // peaked softmax
  check_prefill({4, 2, 128, 16, 40, 7, 2.0f, 0.3f});
}

TEST(CudaAttention, PrefillLlamaShape) {
  MARLIN_REQUIRE_GPU();
  check_prefill({32, 8, 128, 16, 200, 173});
}

struct DecodeCase {
  int n_heads, n_kv_heads, head_dim, page_size;
  std::vector<int> lens;
  int max_len;
  float q_range = 1.0f;
  int window = 0;  // sliding window (0: none)
};

struct DecodeSetup {
  cuda::AttentionGeometry g;
  float scale;
  int max_pages;
  HostPagedCache cache;
  std::vector<std::vector<int32_t>> tables;
  std::vector<uint16_t> qkv;
};

DecodeSetup make_decode(const DecodeCase& c, std::mt19937& rng) {
  const int max_pages = (c.max_len + c.page_size - 1) / c.page_size;
  const int batch = int(c.lens.size());
  DecodeSetup s{geometry(c.n_heads, c.n_kv_heads, c.head_dim, c.page_size), 1.0f / std::sqrt(float(c.head_dim)),
                max_pages, HostPagedCache(c.n_kv_heads, c.head_dim, c.page_size, batch * max_pages + 1, rng), {}, {}};
  s.g.window = c.window;
  for (int len : c.lens) s.tables.push_back(s.cache.add_sequence(len, max_pages, rng));
  s.qkv = random_queries(batch, s.g, c.q_range, rng);
  return s;
}

// Reference outputs for the given lengths (length 0: zeros).
void expect_decode_matches(const DecodeSetup& s, const std::vector<int>& lens, const std::vector<float>& got) {
  const cuda::AttentionGeometry& g = s.g;
  const size_t row_len = size_t(g.n_heads + 2 * g.n_kv_heads) * size_t(g.head_dim);
  const std::vector<float> q = to_float(s.qkv);
  std::vector<double> ref, tol;
  for (size_t b = 0; b < lens.size(); ++b)
    for (int h = 0; h < g.n_heads; ++h) {
      if (lens[b] == 0) {
        ref.insert(ref.end(), size_t(g.head_dim), 0.0);
        tol.insert(tol.end(), size_t(g.head_dim), 0.0);
        continue;
      }
      const ReferenceHead r = reference_attention(s.cache, s.tables[b], h / (g.n_heads / g.n_kv_heads),
                                                  q.data() + b * row_len + size_t(h * g.head_dim), lens[b], s.scale,
                                                  window_first(lens[b] - 1, g.window));
      ref.insert(ref.end(), r.out.begin(), r.out.end());
      tol.insert(tol.end(), r.tolerance.begin(), r.tolerance.end());
    }
  expect_within(got, ref, [&](size_t i) { return tol[i]; }, "attention_decode");
}

std::vector<int32_t> flatten(const std::vector<std::vector<int32_t>>& tables) {
  std::vector<int32_t> flat;
  for (const auto& t : tables) flat.insert(flat.end(), t.begin(), t.end());
  return flat;
}

void check_decode(const DecodeCase& c) {
  SCOPED_TRACE(testing::Message() << "heads " << c.n_heads << "/" << c.n_kv_heads << " hd " << c.head_dim << " page "
                                  << c.page_size << " batch " << c.lens.size() << " max_len " << c.max_len);
  std::mt19937 rng(uint32_t(c.max_len * 7 + c.lens.size() + c.head_dim));
  const DecodeSetup s = make_decode(c, rng);
  const int batch = int(c.lens.size());
  DeviceBuffer<uint16_t> dqkv(s.qkv), dkeys(s.cache.keys), dvalues(s.cache.values),
      dout(std::vector<uint16_t>(size_t(batch) * size_t(c.n_heads * c.head_dim), kPoison));
  DeviceBuffer<int32_t> dtables(flatten(s.tables)), dlens(std::vector<int32_t>(c.lens.begin(), c.lens.end()));
  DeviceBuffer<float> workspace(size_t(std::max<int64_t>(1, cuda::attention_decode_workspace_floats(batch, c.max_len, s.g))));
  cuda::attention_decode(as_half(dqkv), batch, dlens.get(), dtables.get(), s.max_pages, c.max_len, s.g,
                         {as_half(dkeys), as_half(dvalues)}, s.scale, as_half(dout), workspace.get(), nullptr);
  expect_decode_matches(s, c.lens, to_float(dout.download()));
}

TEST(CudaAttention, Decode) {
  MARLIN_REQUIRE_GPU();
  check_decode({4, 4, 64, 16, {1}, 16});                               // one tile, no split
  check_decode({6, 2, 64, 16, {1, 77, 200}, 256});                     // group 3
  check_decode({32, 8, 128, 16, {1, 63, 64, 65, 2049}, 2100});         // lengths around tile edges
  check_decode({12, 4, 128, 32, {4000, 1, 1234, 0}, 4096});            // an empty sequence
  check_decode({4, 1, 256, 64, {300, 5}, 512});                        // head_dim 256
  check_decode({40, 2, 64, 16, {100, 33}, 128});                       // group 20: two head tiles
  check_decode({8, 8, 128, 16, {700, 3}, 1024, 4.0f});                 // peaked softmax
  check_decode({32, 8, 128, 16, {8192}, 8192});                        // a long context, many chunks
}

// Sliding windows (Gemma 3): keys before the window are skipped by whole tiles or masked, in
// windows shorter and longer than a 64-key tile, starting inside pages.
TEST(CudaAttention, PrefillSlidingWindow) {
  MARLIN_REQUIRE_GPU();
  check_prefill({4, 1, 256, 32, 200, 0, 1.0f, 0, 16});   // windows inside one tile
  check_prefill({4, 1, 256, 32, 300, 0, 1.0f, 0, 100});  // a window across tiles, first tiles skipped
  check_prefill({8, 2, 128, 16, 130, 45, 2.0f, 0, 70});  // pos0 > 0
  check_prefill({6, 2, 64, 16, 70, 1000, 1.0f, 0, 512}); // a short prompt after a long context
  check_prefill({4, 4, 64, 16, 40, 0, 1.0f, 0, 1});      // each query sees only itself
}

TEST(CudaAttention, DecodeSlidingWindow) {
  MARLIN_REQUIRE_GPU();
  check_decode({4, 1, 256, 32, {1, 15, 16, 17, 100, 600}, 1024, 1.0f, 16});
  check_decode({4, 1, 256, 32, {511, 512, 513, 3000}, 4096, 1.0f, 512});   // many chunks, most before the window
  check_decode({32, 8, 128, 16, {8192, 0, 70}, 8192, 1.0f, 1000});
  check_decode({8, 8, 64, 16, {5, 300}, 512, 4.0f, 1});
}

TEST(CudaAttention, DecodeLargeBatch) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(77);
  std::uniform_int_distribution<int> len(1, 1000);
  std::vector<int> lens(64);
  for (auto& l : lens) l = len(rng);
  check_decode({8, 2, 128, 16, lens, 1024});
  for (auto& l : lens) l = len(rng) % 300 + 1;
  check_decode({16, 16, 64, 32, lens, 320});  // 1024 blocks per chunk: no split, no combine pass
}

// A decode step captured once into a CUDA graph stays right when the lengths change on the device.
TEST(CudaAttention, DecodeGraphReplay) {
  MARLIN_REQUIRE_GPU();
  const DecodeCase c{32, 8, 128, 16, {900, 17, 2000}, 2048};
  std::mt19937 rng(99);
  const DecodeSetup s = make_decode(c, rng);
  const int batch = int(c.lens.size());
  DeviceBuffer<uint16_t> dqkv(s.qkv), dkeys(s.cache.keys), dvalues(s.cache.values),
      dout(size_t(batch) * size_t(c.n_heads * c.head_dim));
  DeviceBuffer<int32_t> dtables(flatten(s.tables)), dlens(std::vector<int32_t>{1, 1, 1});
  DeviceBuffer<float> workspace(size_t(std::max<int64_t>(1, cuda::attention_decode_workspace_floats(batch, c.max_len, s.g))));

  cudaStream_t stream;
  cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaGraph_t graph;
  cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "begin capture");
  cuda::attention_decode(as_half(dqkv), batch, dlens.get(), dtables.get(), s.max_pages, c.max_len, s.g,
                         {as_half(dkeys), as_half(dvalues)}, s.scale, as_half(dout), workspace.get(), stream);
  cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec;
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (const std::vector<int>& lens : {std::vector<int>{1, 1, 1}, c.lens, std::vector<int>{450, 3, 1999}}) {
    dlens.upload(std::vector<int32_t>(lens.begin(), lens.end()));
    cuda_ok(cudaGraphLaunch(exec, stream), "graph launch");
    cuda_ok(cudaStreamSynchronize(stream), "sync");
    expect_decode_matches(s, lens, to_float(dout.download()));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace marlin::test
