// CUDA kernel of crop_resize: one thread per output pixel, on the current stream, with
// no host synchronisation. Same arithmetic as the CPU kernel (crop_resize_common.h).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <algorithm>

#include "../crop_resize_checks.h"
#include "../crop_resize_common.h"

namespace dfdc_fast {
namespace {

using namespace crop_resize_detail;

__global__ void crop_resize_kernel(Source src, const int64_t* __restrict__ rois, uint8_t* __restrict__ out,
                                   int64_t n, int64_t out_h, int64_t out_w, int64_t up_mode) {
  const int64_t total = n * out_h * out_w;
  for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)blockDim.x * gridDim.x) {
    const int64_t x = p % out_w;
    const int64_t y = (p / out_w) % out_h;
    const int64_t i = p / (out_w * out_h);
    int64_t roi[kRoiFields];
#pragma unroll
    for (int k = 0; k < kRoiFields; ++k) roi[k] = rois[i * kRoiFields + k];
    output_pixel(src, roi, x, y, up_mode, out + p * 3);
  }
}

at::Tensor crop_resize_cuda(const at::Tensor& frames, int64_t layout, const at::Tensor& rois, int64_t out_h,
                            int64_t out_w, int64_t matrix, bool full_range, int64_t rotation, int64_t up_mode) {
  const auto hw = check_crop_resize_args(frames, layout, rois, out_h, out_w, rotation, up_mode);
  c10::cuda::CUDAGuard guard(frames.device());
  const int64_t n = rois.size(0);
  at::Tensor out = at::empty({n, out_h, out_w, 3}, frames.options());
  const int64_t total = n * out_h * out_w;
  if (total == 0) return out;
  const int64_t frame_stride = frames.numel() / std::max<int64_t>(frames.size(0), 1);
  const Source src = make_source(frames.data_ptr<uint8_t>(), frame_stride, hw.first, hw.second, layout, rotation,
                                 matrix, full_range);
  constexpr int threads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((total + threads - 1) / threads, 65535LL * 16));
  crop_resize_kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      src, rois.data_ptr<int64_t>(), out.data_ptr<uint8_t>(), n, out_h, out_w, up_mode);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CUDA, m) { m.impl("crop_resize", &crop_resize_cuda); }

}  // namespace dfdc_fast
