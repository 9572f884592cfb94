// CUDA kernel of nms_padded: exact greedy NMS of every set of a padded batch, one thread
// block per set, nothing copied to the host.
//
// A block keeps a bitmask of removed boxes (invalid ones start removed) in shared memory
// and walks its boxes in order. Every thread reads the same bit for box i, so the branch
// is uniform: a removed box is skipped at once; a kept box is written to `keep`, then the
// threads test the boxes after it in parallel (thread t takes j = i + 1 + t, i + 1 + t +
// blockDim.x, ...) and set the bits of those it suppresses, and the block synchronises.
// Only kept boxes cost a barrier, and only boxes not yet removed are tested, so a set
// costs O(kept x valid / threads) overlap tests, the same decisions as the CPU kernel
// (same arithmetic, nms_common.h) and no K x K mask in memory.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <algorithm>
#include <limits>

#include "../nms_common.h"

namespace dfdc_fast {
namespace {

using nms_detail::Mode;

// Shared memory holds one bit per box: 48 KiB (the default limit) covers 393,216 boxes.
constexpr int64_t kMaxBoxes = 48 * 1024 * 8;

__device__ __forceinline__ bool is_removed(const uint32_t* removed, int64_t i) {
  return (removed[i >> 5] >> (i & 31)) & 1u;
}

template <typename T>
__global__ void nms_padded_kernel(const T* __restrict__ boxes, const bool* __restrict__ valid,
                                  bool* __restrict__ keep, int64_t K, double threshold, Mode mode) {
  extern __shared__ uint32_t removed[];
  const int64_t set = blockIdx.x;
  const T* bx = boxes + set * K * 4;
  const bool* v = valid + set * K;
  bool* k = keep + set * K;
  const int64_t words = (K + 31) / 32;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) {
    uint32_t bits = 0;
    for (int t = 0; t < 32; ++t) {
      const int64_t i = w * 32 + t;
      if (i >= K || !v[i]) bits |= 1u << t;
    }
    removed[w] = bits;
  }
  for (int64_t i = threadIdx.x; i < K; i += blockDim.x) k[i] = false;
  __syncthreads();

  for (int64_t i = 0; i < K; ++i) {
    if (is_removed(removed, i)) continue;  // the same value for every thread of the block
    if (threadIdx.x == 0) k[i] = true;
    const T a[4] = {bx[i * 4 + 0], bx[i * 4 + 1], bx[i * 4 + 2], bx[i * 4 + 3]};
    const T aa = nms_detail::area(a, mode);
    for (int64_t j = i + 1 + threadIdx.x; j < K; j += blockDim.x) {
      if (is_removed(removed, j)) continue;
      const T* b = bx + j * 4;
      if (nms_detail::suppresses(a, aa, b, nms_detail::area(b, mode), threshold, mode)) {
        atomicOr(&removed[j >> 5], 1u << (j & 31));
      }
    }
    __syncthreads();  // every suppression by box i is visible before box i + 1 is read
  }
}

at::Tensor nms_padded_cuda(const at::Tensor& boxes, const at::Tensor& valid, double threshold,
                           c10::string_view mode_name) {
  nms_detail::check_args(boxes, valid, threshold);
  TORCH_CHECK(boxes.is_cuda(), "nms_padded_cuda: expected CUDA tensors, got ", boxes.device());
  const Mode mode = nms_detail::parse_mode(mode_name);
  at::cuda::CUDAGuard guard(boxes.device());
  // Half and bfloat16 boxes are decided in float32, as on the CPU.
  const auto b = (boxes.scalar_type() == at::kDouble ? boxes : boxes.to(at::kFloat)).contiguous();
  const auto v = valid.contiguous();
  const int64_t B = b.size(0), K = b.size(1);
  TORCH_CHECK(K <= kMaxBoxes, "nms_padded_cuda: at most ", kMaxBoxes, " boxes per set, got ", K);
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "nms_padded_cuda: too many sets: ", B);
  auto keep = at::empty({B, K}, v.options());
  if (B * K == 0) return keep;
  const int threads = K > 128 ? 256 : K > 32 ? 128 : 32;
  const size_t shared = static_cast<size_t>((K + 31) / 32) * sizeof(uint32_t);
  AT_DISPATCH_FLOATING_TYPES(b.scalar_type(), "nms_padded_cuda", [&] {
    nms_padded_kernel<scalar_t><<<static_cast<unsigned int>(B), threads, shared, at::cuda::getCurrentCUDAStream()>>>(
        b.data_ptr<scalar_t>(), v.data_ptr<bool>(), keep.data_ptr<bool>(), K, threshold, mode);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CUDA, m) {
  m.impl("nms_padded", &nms_padded_cuda);
}

}  // namespace dfdc_fast
