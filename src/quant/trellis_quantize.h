// The trellis quantizer of one linear layer (QTIP/EXL3 style): incoherence rotation on both sides
// (quant/hadamard.h), one fp16 scale per row, LDLQ feedback in 16-column strips (quant/ldlq.h)
// with every 16 × 16 tile encoded by the tail-biting trellis (quant/trellis.h). The output is the
// fixed storage layout of a `trellisK` tensor (docs in /work/notes/trellis_layout.md, summarized):
//   - W' = R_out·W·R_inᵀ with R_in = Rotation(cols, seed), R_out = Rotation(rows, seed + 1);
//   - row scale s_r (fp16 bits), Ŵ'[r][c] = s_r · trellis_value(state of value t of tile (i, j)),
//     product in fp32, t = (r mod 16)·16 + (c mod 16), tile (i, j) = rows 16i.., columns 16j..;
//   - tile (i, j)'s trellis_tile_words(K) words start at word i·cols·K + j·16·K of `codes`
//     (tiles strip by strip: all of row-strip i, then i + 1);
//   - Ŵ = R_outᵀ·Ŵ'·R_in.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace marlin {

class ThreadPool;

// The default row scale factor of K-bit tiles: 1.05 for K ≤ 2, 1.1 above. The whole default
// model with LDLQ (perplexity and mean KL, 16 × 512 tokens, this project's CPU; unquantized
// 11.344): K = 2: 19.958 / 0.604 at 1.05, 20.277 / 0.621 at 1.1; K = 3: 13.212 / 0.151 at 1.05,
// 13.149 / 0.140 at 1.1; K = 4: 11.646 / 0.0399 at 1.0, 11.602 / 0.0397 at 1.05, 11.450 / 0.0382
// at 1.1, 11.749 / 0.0398 at 1.15.
inline double trellis_row_scale(int k) { return k <= 2 ? 1.05 : 1.1; }

struct TrellisQuantOptions {
  // s_r = fp16(f · RMS of row r of W') with f = scale_factor, or where that is 0 (the default)
  // trellis_row_scale(K). Above 1 because LDLQ's targets carry the feedback of later strips'
  // errors on top of W', and the codebook clips beyond ≈ ±3.2: with LDLQ, a 576 × 576 synthetic
  // layer lost least at 1.0, 1.05, 1.1 for K = 2, 3, 4, a real one (SmolLM2 layer-0 q_proj) at
  // 1.1 for every K; 0.85 cost 14–52%, 1.2 0.5–5.5% (bench_trellis_layer).
  double scale_factor = 0.0;
  // LDLQ visits the 16-column strips by increasing energy tr(H'_jj) instead of right to left
  // (trellis_quantize.cpp says why); the layout does not change.
  bool order_strips = true;
  double percdamp = 0.01;      // LDL dampening relative to mean(diag H) (quant/ldl.h)
  int damping_retries = 3;
  ThreadPool* pool = nullptr;  // results do not depend on it
};

struct TrellisLayer {
  int64_t rows = 0, cols = 0;
  int k = 0;
  uint64_t seed = 0;
  std::vector<uint16_t> codes;       // rows/16 × cols/16 tiles of 16·k words, in the layout above
  std::vector<uint16_t> row_scales;  // fp16 bits of s_r, one per row
  // tr(E·H·Eᵀ), E = W − Ŵ in the original basis with the H given (H = I when none was given).
  double proxy_loss = 0.0;
  double rotated_proxy_loss = 0.0;   // the same for W' − Ŵ' against H' (equal up to rounding)
  double relative_loss = 0.0;        // proxy_loss / tr(W·H·Wᵀ) (0 for an all-zero W)
  double damping = 0.0;              // the absolute λ LDL added to diag H' (0 without a Hessian)
};

// Quantizes w (rows × cols row-major, rows = output features) to k bits per weight. `hessian` is
// cols × cols, symmetric (both triangles are read: the rotation needs them), e.g. HessianAccumulator::hessian(), for LDLQ; empty means no
// calibration: every tile is encoded on its own (no feedback) and the losses are plain squared
// errors. Throws marlin::Error for rows or cols not multiples of 16, k outside 1..8, a Hessian of
// the wrong size, non-finite input, a row whose scale overflows fp16, or a Hessian LDL rejects.
TrellisLayer quantize_trellis_layer(const float* w, int64_t rows, int64_t cols, std::span<const double> hessian,
                                    int k, uint64_t seed, const TrellisQuantOptions& options = {});

// Several matrices that read the same input (q, k and v; gate and up), quantized as one stack: the
// same input rotation (one seed), Hessian and k for all, each its own output rotation (seed + 1,
// its rows) and row scales. LDLQ treats every row on its own, so each result is bit for bit what
// quantize_trellis_layer gives that matrix alone; the stack rotates and factors the Hessian once
// and hands the tile search each strip of all the matrices in one call (more tiles at a time for
// a GPU search). Throws as quantize_trellis_layer does, for any of the matrices.
struct TrellisMatrix {
  const float* w = nullptr;  // rows × cols, row-major
  int64_t rows = 0;
};
std::vector<TrellisLayer> quantize_trellis_stack(std::span<const TrellisMatrix> matrices, int64_t cols,
                                                 std::span<const double> hessian, int k, uint64_t seed,
                                                 const TrellisQuantOptions& options = {});

// Bytes quantize_trellis_stack holds for a stack of `weights` weights besides its Hessian: the
// caller's fp32 copy, and the rotated, decoded and strip-ordered input and output matrices.
constexpr uint64_t trellis_stack_bytes(uint64_t weights) { return 5 * sizeof(float) * weights; }

// Ŵ (rows × cols, original basis) straight from the layout: tile states, codebook, row scales,
// then the inverse rotations. Throws marlin::Error for sizes that do not match the layout.
std::vector<float> decode_trellis_layer(std::span<const uint16_t> codes, std::span<const uint16_t> row_scales,
                                        int64_t rows, int64_t cols, int k, uint64_t seed,
                                        ThreadPool* pool = nullptr);

}  // namespace marlin
