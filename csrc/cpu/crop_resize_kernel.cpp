// CPU kernel of crop_resize: one output row per task. The oracle the CUDA kernel is
// tested against; the arithmetic is in crop_resize_common.h.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "../crop_resize_checks.h"
#include "../crop_resize_common.h"

namespace dfdc_fast {
namespace {

at::Tensor crop_resize_cpu(const at::Tensor& frames, int64_t layout, const at::Tensor& rois, int64_t out_h,
                           int64_t out_w, double kr, double kb, bool full_range, int64_t rotation, int64_t up_mode) {
  using namespace crop_resize_detail;
  const auto hw = check_crop_resize_args(frames, layout, rois, out_h, out_w, rotation, up_mode);
  const int64_t n = rois.size(0);
  at::Tensor out = at::empty({n, out_h, out_w, 3}, frames.options());
  if (n == 0) return out;
  const int64_t frame_stride = frames.numel() / std::max<int64_t>(frames.size(0), 1);
  const Source src = make_source(frames.data_ptr<uint8_t>(), frame_stride, hw.first, hw.second, layout, rotation, kr,
                                 kb, full_range);
  const int64_t* r = rois.data_ptr<int64_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  at::parallel_for(0, n * out_h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t i = row / out_h, y = row % out_h;
      const int64_t* roi = r + i * kRoiFields;
      uint8_t* line = o + row * out_w * 3;
      for (int64_t x = 0; x < out_w; ++x) output_pixel(src, roi, x, y, up_mode, line + x * 3);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CPU, m) { m.impl("crop_resize", &crop_resize_cpu); }

}  // namespace dfdc_fast
