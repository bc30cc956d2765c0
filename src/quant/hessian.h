// The GPTQ Hessian of one linear layer, H = 2·XᵀX / n, accumulated from batches of the layer's
// input activations X (n rows of `cols` features).
#pragma once

#include <cstdint>
#include <vector>

namespace marlin {

class ThreadPool;

// The widest layer input accepted: 32768 features need an 8 GiB Hessian.
inline constexpr int64_t kMaxHessianCols = 32768;

class HessianAccumulator {
 public:
  // cols: the layer's input features (K), 1..kMaxHessianCols. Memory: cols² doubles.
  explicit HessianAccumulator(int64_t cols);

  // The bytes an accumulator of `cols` features holds (checked like the constructor).
  static uint64_t memory_bytes(int64_t cols);

  // Adds n activation rows (row-major n × cols). Sums in double, split over `pool` by rows of H;
  // the result does not depend on the thread count. Throws marlin::Error (adding nothing)
  // for a non-finite activation.
  void add(const float* x, int64_t n, ThreadPool* pool = nullptr);

  int64_t cols() const { return cols_; }
  int64_t samples() const { return samples_; }
  // H = 2·Σ xᵀx / samples, cols × cols row-major (symmetric). Throws marlin::Error before any sample.
  std::vector<double> hessian() const;

 private:
  int64_t cols_;
  int64_t samples_ = 0;
  int64_t stride_;           // cols rounded up to whole 16-column blocks
  std::vector<double> sum_;  // Σ xᵀx, stride_ × stride_, upper triangle (row i, columns j >= i) used
};

}  // namespace marlin
