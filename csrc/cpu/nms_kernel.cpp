// CPU kernel of nms_padded: exact greedy NMS of every set of a padded batch, one set per
// task. Work per set is O(valid boxes x kept boxes): each kept box scans the boxes after
// it once, and suppressed or invalid boxes are skipped. This kernel is the oracle the
// CUDA kernel is tested against.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <vector>

#include "../nms_common.h"

namespace dfdc_fast {
namespace {

using nms_detail::Mode;

template <typename T>
void nms_sets(const T* boxes, const bool* valid, bool* keep, int64_t B, int64_t K, double threshold, Mode mode) {
  // Sets are independent; small sets are grouped so a task is worth starting.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1));
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> removed(K);
    std::vector<T> areas(K);
    for (int64_t b = begin; b < end; ++b) {
      const T* bx = boxes + b * K * 4;
      const bool* v = valid + b * K;
      bool* k = keep + b * K;
      int64_t stop = 0;  // one past the last valid box
      for (int64_t i = 0; i < K; ++i) {
        removed[i] = !v[i];
        k[i] = false;
        if (v[i]) {
          areas[i] = nms_detail::area(bx + i * 4, mode);
          stop = i + 1;
        }
      }
      for (int64_t i = 0; i < stop; ++i) {
        if (removed[i]) continue;
        k[i] = true;
        const T* a = bx + i * 4;
        const T aa = areas[i];
        for (int64_t j = i + 1; j < stop; ++j) {
          if (removed[j]) continue;
          if (nms_detail::suppresses(a, aa, bx + j * 4, areas[j], threshold, mode)) removed[j] = 1;
        }
      }
    }
  });
}

at::Tensor nms_padded_cpu(const at::Tensor& boxes, const at::Tensor& valid, double threshold,
                          c10::string_view mode_name) {
  nms_detail::check_args(boxes, valid, threshold);
  TORCH_CHECK(boxes.device().is_cpu(), "nms_padded_cpu: expected CPU tensors, got ", boxes.device());
  const Mode mode = nms_detail::parse_mode(mode_name);
  // Half and bfloat16 boxes are decided in float32.
  const auto b = (boxes.scalar_type() == at::kDouble ? boxes : boxes.to(at::kFloat)).contiguous();
  const auto v = valid.contiguous();
  const int64_t B = b.size(0), K = b.size(1);
  auto keep = at::empty({B, K}, v.options());
  if (B * K == 0) return keep;
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_padded_cpu", [&] {
    nms_sets<scalar_t>(b.data_ptr<scalar_t>(), v.data_ptr<bool>(), keep.data_ptr<bool>(), B, K, threshold, mode);
  });
  return keep;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CPU, m) {
  m.impl("nms_padded", &nms_padded_cpu);
}

}  // namespace dfdc_fast
