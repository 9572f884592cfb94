// Argument checks of crop_resize, shared by the CPU and CUDA kernels.
#pragma once

#include <torch/extension.h>

#include "crop_resize_common.h"

namespace dfdc_fast {

// Returns (coded height, coded width) of the stored frames.
inline std::pair<int64_t, int64_t> check_crop_resize_args(const at::Tensor& frames, int64_t layout,
                                                          const at::Tensor& rois, int64_t out_h, int64_t out_w,
                                                          int64_t rotation, int64_t up_mode) {
  using namespace crop_resize_detail;
  TORCH_CHECK(frames.scalar_type() == at::kByte, "crop_resize: frames must be uint8, got ", frames.scalar_type());
  TORCH_CHECK(frames.is_contiguous(), "crop_resize: frames must be contiguous");
  TORCH_CHECK(rois.scalar_type() == at::kLong && rois.dim() == 2 && rois.size(1) == kRoiFields,
              "crop_resize: rois must be int64 (N, ", static_cast<int>(kRoiFields), "), got ", rois.scalar_type(), " ",
              rois.sizes());
  TORCH_CHECK(rois.is_contiguous(), "crop_resize: rois must be contiguous");
  TORCH_CHECK(rois.device() == frames.device(), "crop_resize: rois must be on the frames' device (", frames.device(),
              "), got ", rois.device());
  TORCH_CHECK(out_h >= 1 && out_w >= 1, "crop_resize: output size must be positive, got ", out_h, "x", out_w);
  TORCH_CHECK(rotation >= 0 && rotation <= 3, "crop_resize: rotation is in quarter turns 0..3, got ", rotation);
  TORCH_CHECK(up_mode == kBilinear || up_mode == kBicubic, "crop_resize: up_mode must be 0 (bilinear) or 1 (bicubic)");
  if (layout == kRGB) {
    TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3, "crop_resize: RGB frames must be (T, H, W, 3), got ",
                frames.sizes());
    return {frames.size(1), frames.size(2)};
  }
  TORCH_CHECK(layout == kNV12 || layout == kI420, "crop_resize: layout must be 0 (RGB), 1 (NV12) or 2 (I420), got ",
              layout);
  TORCH_CHECK(frames.dim() == 3 && frames.size(1) % 3 == 0, "crop_resize: YUV 4:2:0 frames must be (T, H*3/2, W), got ",
              frames.sizes());
  const int64_t h = frames.size(1) / 3 * 2, w = frames.size(2);
  TORCH_CHECK(h % 2 == 0 && w % 2 == 0, "crop_resize: YUV 4:2:0 frames need an even size, got ", h, "x", w);
  return {h, w};
}

}  // namespace dfdc_fast
