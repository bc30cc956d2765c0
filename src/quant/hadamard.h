// Incoherence processing (QuIP#/QTIP/EXL3): a random orthogonal rotation applied to a linear
// layer's weights before quantization, so that no weight or Hessian entry stands out, and undone
// at run time on the activations.
//
// The rotation of a dimension d is R = H_b·S:
// - S = diag(s), s_i ∈ {+1, −1} from the seed (rotation_sign_bits below);
// - H_b is block diagonal: the orthonormal Sylvester–Hadamard matrix of size b,
//   (H_b)_ij = (−1)^popcount(i & j) / √b, on every run of b consecutive indices. H_b is
//   symmetric, so Rᵀ = S·H_b.
// - The block b is a function of d alone (hadamard_block): 128 when 128 divides d, else the
//   largest of 64, 32, 16 that divides d (SmolLM2's 576 = 9·64 gets 64); a d that is not a
//   multiple of 16 is an error (LDLQ's 16 × 16 tiles need 16 anyway). A smaller block mixes fewer
//   values, so it spreads outliers less, but it is still exactly orthogonal.
//
// Sign generator (the runtime regenerates the signs from the seed a checkpoint stores; the packed
// bits, d/8 bytes, can also be stored as they are): word k (k = 0, 1, ...) is
// splitmix64_mix(seed + (k + 1)·0x9E3779B97F4A7C15), with splitmix64_mix(z) =
//   z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31
// (all mod 2⁶⁴, i.e. the k-th output of Vigna's SplitMix64 started at `seed`). s_i = −1 exactly
// when bit (i mod 64) of word i/64 is set. Counter-based, so a GPU thread can compute its own word.
//
// Layer convention: y = W·x, W rows × cols (rows = output features, row-major), x of cols values.
// With R_in (d = cols) and R_out (d = rows) the quantizer sees W' = R_out·W·R_inᵀ and the Hessian
// H' = R_in·H·R_inᵀ (H = 2·E[x·xᵀ] as in quant/hessian.h); the runtime computes
//   x' = R_in·x,   y' = W'·x',   y = R_outᵀ·y',
// so y = W·x exactly (up to rounding), and tr(E'·H'·E'ᵀ) = tr(E·H·Eᵀ) for E' = R_out·E·R_inᵀ.
// Either side may be left unrotated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace marlin {

class ThreadPool;

// The Hadamard block size for dimension d (see above); throws marlin::Error when 16 ∤ d or d <= 0.
int64_t hadamard_block(int64_t d);

// In place: every run of `block` consecutive values of x[0, n) becomes H_block times itself
// (orthonormal). block is a power of two from 1 to 128 dividing n.
void block_hadamard(float* x, int64_t n, int64_t block);
void block_hadamard(double* x, int64_t n, int64_t block);

// The sign bits of dimension d from `seed`: (d + 63)/64 words, bit i%64 of word i/64 set means
// s_i = −1; bits past d are zero.
std::vector<uint64_t> rotation_sign_bits(uint64_t seed, int64_t d);

class Rotation {
 public:
  Rotation(int64_t dim, uint64_t seed);

  int64_t dim() const { return dim_; }
  int64_t block() const { return block_; }
  uint64_t seed() const { return seed_; }
  const std::vector<uint64_t>& sign_bits() const { return bits_; }
  double sign(int64_t i) const { return (bits_[size_t(i >> 6)] >> (i & 63) & 1) ? -1.0 : 1.0; }

  // v ← R·v for each of `count` vectors of dim() values (row-major count × dim): what the runtime
  // does to a batch of activations before the GEMM.
  void apply(float* v, int64_t count, ThreadPool* pool = nullptr) const;
  void apply(double* v, int64_t count, ThreadPool* pool = nullptr) const;
  // v ← Rᵀ·v, the inverse: what the runtime does to a batch of outputs after the GEMM.
  void apply_transpose(float* v, int64_t count, ThreadPool* pool = nullptr) const;
  void apply_transpose(double* v, int64_t count, ThreadPool* pool = nullptr) const;

 private:
  int64_t dim_, block_;
  uint64_t seed_;
  std::vector<uint64_t> bits_;
};

// W (rows × cols, row-major) ← R_out·W·R_inᵀ; a null rotation leaves that side alone. Throws
// marlin::Error when a rotation's dimension does not match (R_in: cols, R_out: rows).
void rotate_weight(float* w, int64_t rows, int64_t cols, const Rotation* out, const Rotation* in,
                   ThreadPool* pool = nullptr);
// The inverse: W ← R_outᵀ·W·R_in (back to the original basis, e.g. to evaluate a quantized W').
void unrotate_weight(float* w, int64_t rows, int64_t cols, const Rotation* out, const Rotation* in,
                     ThreadPool* pool = nullptr);
// H (n × n, row-major) ← R·H·Rᵀ with n = r.dim() (an input-side rotation's Hessian).
void rotate_hessian(double* h, int64_t n, const Rotation& r, ThreadPool* pool = nullptr);

}  // namespace marlin
