#include "model/moe_block.h"

#include <utility>

#include "core/error.h"
#include "model/weights.h"

namespace marlin {

SparseMlp MoeDecoderModel::add_sparse_mlp(int layer, const ModelSource& source, SparseMlpNames names) {
  const MoeConfig& m = config_.moe;
  MARLIN_CHECK(int(names.experts.size()) == m.n_experts + m.routing.n_shared,
               "model: layer {} names {} experts of {} routed and {} shared", layer, names.experts.size(), m.n_experts,
               m.routing.n_shared);
  MARLIN_CHECK(names.score_bias.empty() != m.score_bias, "model: layer {} {} a router score bias", layer,
               m.score_bias ? "lacks" : "has");
  std::vector<float> score_bias;
  if (m.score_bias) score_bias = require_vector(source, names.score_bias, m.n_experts);
  SparseMlp mlp;
  mlp.router_group = int(linear_groups(layer).size());
  mlp.router = add_linear(layer, source, {{std::move(names.router), m.n_experts, config_.d_model}});
  mlp.experts =
      add_experts(layer, source, std::move(names.experts), m.d_expert_ffn, mlp.router_group, std::move(score_bias));
  return mlp;
}

void MoeDecoderModel::sparse_mlp(const SparseMlp& mlp, Act h, Act out, int logits_slot,
                                 const LinearInputObserver* observer) {
  const Act logits = be_->activations(logits_slot, h.rows, config_.moe.n_experts, ActType::kF32);
  observe(observer, mlp.router_group, h);
  be_->matmul(**mlp.router, h, logits);
  if (!observer) return be_->moe(**mlp.experts, h, logits, config_.moe.routing, out);
  const int first = mlp.experts->first_group;
  const ExpertInputObserver experts_observer = [&](int expert, bool down, const float* x, int64_t rows,
                                                   int64_t cols) {
    (*observer)(first + 2 * expert + (down ? 1 : 0), x, rows, cols);
  };
  be_->moe(**mlp.experts, h, logits, config_.moe.routing, out, &experts_observer);
}

}  // namespace marlin
