#include "quant/hadamard.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

constexpr int64_t kMaxBlock = 128;
constexpr int64_t kColumnChunk = 256;  // columns per task when a transform runs down the columns

uint64_t splitmix64_mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The orthonormal transform of one block of b values (b a power of two).
template <typename T>
void hadamard_in_place(T* x, int64_t b) {
  for (int64_t h = 1; h < b; h *= 2)
    for (int64_t i = 0; i < b; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const T a = x[j], c = x[j + h];
        x[j] = a + c;
        x[j + h] = a - c;
      }
  const T scale = T(1.0 / std::sqrt(double(b)));
  for (int64_t j = 0; j < b; ++j) x[j] *= scale;
}

template <typename T>
void apply_signs(T* x, const std::vector<uint64_t>& bits, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (bits[size_t(i >> 6)] >> (i & 63) & 1) x[i] = -x[i];
}

// R·v (signs first) or Rᵀ·v (Hadamard first) on `count` contiguous vectors of r.dim() values.
template <typename T>
void rotate_vectors(const Rotation& r, T* v, int64_t count, bool transpose, ThreadPool* pool) {
  MARLIN_CHECK(count >= 0 && (count == 0 || v != nullptr), "rotation: bad batch of {} vectors", count);
  const int64_t d = r.dim();
  parallel_ranges(pool, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      T* x = v + k * d;
      if (!transpose) apply_signs(x, r.sign_bits(), d);
      block_hadamard(x, d, r.block());
      if (transpose) apply_signs(x, r.sign_bits(), d);
    }
  });
}

// The same on the columns of an n × cols row-major matrix (v ← R·M or Rᵀ·M with n = r.dim()):
// rows are negated and combined whole, so the inner loops run along contiguous columns.
template <typename T>
void rotate_columns(const Rotation& r, T* m, int64_t cols, bool transpose, ThreadPool* pool) {
  const int64_t n = r.dim(), b = r.block();
  const T scale = T(1.0 / std::sqrt(double(b)));
  auto signs = [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; ++i)
      if (r.sign(i) < 0)
        for (int64_t c = c0; c < c1; ++c) m[i * cols + c] = -m[i * cols + c];
  };
  parallel_ranges(pool, (cols + kColumnChunk - 1) / kColumnChunk, 1, [&](int64_t begin, int64_t end) {
    const int64_t c0 = begin * kColumnChunk, c1 = std::min(cols, end * kColumnChunk);
    if (!transpose) signs(c0, c1);
    for (int64_t base = 0; base < n; base += b) {
      for (int64_t h = 1; h < b; h *= 2)
        for (int64_t i = base; i < base + b; i += 2 * h)
          for (int64_t j = i; j < i + h; ++j) {
            T* x = m + j * cols;
            T* y = m + (j + h) * cols;
            for (int64_t c = c0; c < c1; ++c) {
              const T a = x[c], e = y[c];
              x[c] = a + e;
              y[c] = a - e;
            }
          }
      for (int64_t i = base; i < base + b; ++i)
        for (int64_t c = c0; c < c1; ++c) m[i * cols + c] *= scale;
    }
    if (transpose) signs(c0, c1);
  });
}

template <typename T>
void block_hadamard_impl(T* x, int64_t n, int64_t block) {
  MARLIN_CHECK(block >= 1 && block <= kMaxBlock && (block & (block - 1)) == 0,
               "Hadamard block {} is not a power of two up to {}", block, kMaxBlock);
  MARLIN_CHECK(n >= 0 && n % block == 0, "Hadamard: {} values are not whole blocks of {}", n, block);
  for (int64_t i = 0; i < n; i += block) hadamard_in_place(x + i, block);
}

void check_sides(int64_t rows, int64_t cols, const Rotation* out, const Rotation* in) {
  MARLIN_CHECK(rows > 0 && cols > 0, "rotation of a {} × {} weight", rows, cols);
  MARLIN_CHECK(!in || in->dim() == cols, "input-side rotation of dimension {} for a weight of {} columns",
               in ? in->dim() : 0, cols);
  MARLIN_CHECK(!out || out->dim() == rows, "output-side rotation of dimension {} for a weight of {} rows",
               out ? out->dim() : 0, rows);
}

}  // namespace

int64_t hadamard_block(int64_t d) {
  MARLIN_CHECK(d > 0 && d % 16 == 0, "Hadamard rotation of dimension {}: not a positive multiple of 16", d);
  int64_t b = kMaxBlock;
  while (d % b != 0) b /= 2;
  return b;
}

void block_hadamard(float* x, int64_t n, int64_t block) { block_hadamard_impl(x, n, block); }
void block_hadamard(double* x, int64_t n, int64_t block) { block_hadamard_impl(x, n, block); }

std::vector<uint64_t> rotation_sign_bits(uint64_t seed, int64_t d) {
  MARLIN_CHECK(d > 0, "sign bits of dimension {}", d);
  std::vector<uint64_t> bits(size_t((d + 63) / 64));
  for (size_t k = 0; k < bits.size(); ++k) bits[k] = splitmix64_mix(seed + (k + 1) * 0x9E3779B97F4A7C15ull);
  if (d % 64 != 0) bits.back() &= (uint64_t(1) << (d % 64)) - 1;
  return bits;
}

Rotation::Rotation(int64_t dim, uint64_t seed)
    : dim_(dim), block_(hadamard_block(dim)), seed_(seed), bits_(rotation_sign_bits(seed, dim)) {}

void Rotation::apply(float* v, int64_t count, ThreadPool* pool) const { rotate_vectors(*this, v, count, false, pool); }
void Rotation::apply(double* v, int64_t count, ThreadPool* pool) const { rotate_vectors(*this, v, count, false, pool); }
void Rotation::apply_transpose(float* v, int64_t count, ThreadPool* pool) const {
  rotate_vectors(*this, v, count, true, pool);
}
void Rotation::apply_transpose(double* v, int64_t count, ThreadPool* pool) const {
  rotate_vectors(*this, v, count, true, pool);
}

// Each row w of W becomes w·R_inᵀ = (R_in·wᵀ)ᵀ, and R_out acts on the columns.
void rotate_weight(float* w, int64_t rows, int64_t cols, const Rotation* out, const Rotation* in, ThreadPool* pool) {
  check_sides(rows, cols, out, in);
  if (in) in->apply(w, rows, pool);
  if (out) rotate_columns(*out, w, cols, false, pool);
}

void unrotate_weight(float* w, int64_t rows, int64_t cols, const Rotation* out, const Rotation* in,
                     ThreadPool* pool) {
  check_sides(rows, cols, out, in);
  if (in) in->apply_transpose(w, rows, pool);
  if (out) rotate_columns(*out, w, cols, true, pool);
}

// H·Rᵀ rotates every row of H by R; R·(H·Rᵀ) then rotates every column.
void rotate_hessian(double* h, int64_t n, const Rotation& r, ThreadPool* pool) {
  MARLIN_CHECK(n == r.dim(), "Hessian of {} columns with a rotation of dimension {}", n, r.dim());
  r.apply(h, n, pool);
  rotate_columns(r, h, n, false, pool);
}

}  // namespace marlin
