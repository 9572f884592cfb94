// Overlap test and argument checks of nms_padded, shared by the CPU and CUDA kernels so
// both decide every pair with the same arithmetic (and reject the same inputs).
#pragma once

#include <torch/extension.h>

#include <algorithm>

#if defined(__CUDACC__)
#define DFDC_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DFDC_HOST_DEVICE inline
#endif

namespace dfdc_fast {
namespace nms_detail {

enum class Mode { kIoU, kMin };

inline Mode parse_mode(c10::string_view mode) {
  if (mode == "iou") return Mode::kIoU;
  if (mode == "min") return Mode::kMin;
  TORCH_CHECK(false, "nms_padded: mode must be \"iou\" or \"min\", got \"", std::string(mode), "\"");
  return Mode::kIoU;
}

inline void check_args(const at::Tensor& boxes, const at::Tensor& valid, double threshold) {
  TORCH_CHECK(boxes.dim() == 3 && boxes.size(2) == 4, "nms_padded: boxes must be (B, K, 4), got shape ",
              boxes.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()), "nms_padded: boxes must be floating point, got ",
              boxes.scalar_type());
  TORCH_CHECK(valid.scalar_type() == at::kBool, "nms_padded: valid must be bool, got ", valid.scalar_type());
  TORCH_CHECK(valid.dim() == 2 && valid.size(0) == boxes.size(0) && valid.size(1) == boxes.size(1),
              "nms_padded: valid must be (B, K) = (", boxes.size(0), ", ", boxes.size(1), "), got shape ",
              valid.sizes());
  TORCH_CHECK(valid.device() == boxes.device(), "nms_padded: boxes and valid must be on one device, got ",
              boxes.device(), " and ", valid.device());
  TORCH_CHECK(threshold == threshold, "nms_padded: threshold must not be NaN");
}

// Area of a box: x1 - x0 times y1 - y0 (torchvision), or with one pixel added to each
// side ("min" mode: the original MTCNN code counts x1 - x0 + 1 columns).
template <typename T>
DFDC_HOST_DEVICE T area(const T* b, Mode mode) {
  const T one = mode == Mode::kMin ? T(1) : T(0);
  return (b[2] - b[0] + one) * (b[3] - b[1] + one);
}

// True when box `b` (area `ab`) overlaps the kept box `a` (area `aa`) by more than
// `threshold`: intersection over union as torchvision's CPU kernel computes it
// (inter / (area_a + area_b - inter)), or intersection over the smaller area with the
// +1 convention (facenet-pytorch's nms_numpy "Min"). The ratio is computed in T; it is
// compared with the threshold in double for IoU (torchvision's double threshold) and in T
// for "min" (numpy compares facenet-pytorch's float32 ratios with a float32 threshold).
// The two differ only for a ratio equal to the threshold rounded to T.
template <typename T>
DFDC_HOST_DEVICE bool suppresses(const T* a, T aa, const T* b, T ab, double threshold, Mode mode) {
  const T one = mode == Mode::kMin ? T(1) : T(0);
  const T zero(0);
  const T left = a[0] > b[0] ? a[0] : b[0];
  const T top = a[1] > b[1] ? a[1] : b[1];
  const T right = a[2] < b[2] ? a[2] : b[2];
  const T bottom = a[3] < b[3] ? a[3] : b[3];
  T w = right - left + one;
  T h = bottom - top + one;
  w = w > zero ? w : zero;
  h = h > zero ? h : zero;
  const T inter = w * h;
  const T ovr = mode == Mode::kMin ? inter / (aa < ab ? aa : ab) : inter / (aa + ab - inter);
  return mode == Mode::kMin ? ovr > static_cast<T>(threshold) : static_cast<double>(ovr) > threshold;
}

}  // namespace nms_detail
}  // namespace dfdc_fast
