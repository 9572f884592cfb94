// Argument checks shared by the CPU and CUDA kernels of label3d and component_stats,
// so both reject the same inputs with the same messages.
#pragma once

#include <torch/extension.h>

#include <limits>

#include "label3d_common.h"

namespace dfdc_fast {

inline void check_label3d_args(const at::Tensor& mask, int64_t connectivity) {
  TORCH_CHECK(mask.dim() == 4, "label3d: expected a (B, T, H, W) mask, got shape ", mask.sizes());
  TORCH_CHECK(mask.scalar_type() == at::kBool || mask.scalar_type() == at::kByte,
              "label3d: mask must be bool or uint8, got ", mask.scalar_type());
  TORCH_CHECK(label3d_detail::num_backward(connectivity) > 0,
              "label3d: connectivity must be 6, 18 or 26, got ", connectivity);
  TORCH_CHECK(mask.size(1) * mask.size(2) * mask.size(3) < std::numeric_limits<int32_t>::max(),
              "label3d: one mask may hold at most 2^31 - 2 voxels, got shape ", mask.sizes());
}

inline void check_component_stats_args(const at::Tensor& labels, int64_t num_labels) {
  TORCH_CHECK(labels.dim() == 4, "component_stats: expected (B, T, H, W) labels, got shape ",
              labels.sizes());
  TORCH_CHECK(labels.scalar_type() == at::kInt, "component_stats: labels must be int32, got ",
              labels.scalar_type());
  TORCH_CHECK(num_labels >= 0, "component_stats: num_labels must be >= 0, got ", num_labels);
}

}  // namespace dfdc_fast
