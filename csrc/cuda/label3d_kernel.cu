// CUDA kernels of label3d and component_stats.
//
// Labelling is the union-find of Playne & Hawick (IEEE TPDS 2018), one thread per
// voxel: (1) every foreground voxel starts as its own root; (2) each voxel unites
// with its foreground backward neighbours, linking the larger root under the smaller
// with atomicMin, so every root ends as the smallest index of its component (a voxel
// whose left neighbour is foreground skips the neighbours that one already joined);
// (3) paths are compressed to the root. Roots are then numbered in raster order by a
// device prefix sum over "is a root" flags, per batch element, with no host sync.
// The result equals the CPU kernel (and skimage.measure.label) exactly.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <algorithm>
#include <limits>

#include "../label3d_checks.h"
#include "../label3d_common.h"

namespace dfdc_fast {
namespace {

using label3d_detail::Coord;
using label3d_detail::Extent;

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535LL * 8));
}

#define DFDC_GRID_STRIDE(i, n)                                                 \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
       i += (int64_t)blockDim.x * gridDim.x)

__global__ void init_kernel(const uint8_t* __restrict__ mask, int32_t* __restrict__ lab, int64_t n) {
  DFDC_GRID_STRIDE(i, n) { lab[i] = mask[i] ? static_cast<int32_t>(i) : -1; }
}

// Reads go through a volatile pointer: other threads relink parents concurrently,
// and a stale cached value must not hide a newer, smaller parent for long.
__device__ __forceinline__ int32_t find_root_volatile(const volatile int32_t* lab, int32_t x) {
  int32_t p = lab[x];
  while (p != x) {
    x = p;
    p = lab[x];
  }
  return x;
}

__device__ __forceinline__ void unite(int32_t* lab, int32_t a, int32_t b) {
  while (true) {
    a = find_root_volatile(lab, a);
    b = find_root_volatile(lab, b);
    if (a == b) return;
    if (a > b) {
      const int32_t s = a;
      a = b;
      b = s;
    }
    // b is the larger root: point it at a, unless another thread relinked it first.
    const int32_t old = atomicMin(lab + b, a);
    if (old == b) return;
    b = old;
  }
}

__global__ void merge_kernel(const uint8_t* __restrict__ mask, int32_t* lab, Extent e, int64_t n,
                             int64_t connectivity) {
  const int nb = label3d_detail::num_backward(connectivity);
  DFDC_GRID_STRIDE(i, n) {
    if (!mask[i]) continue;
    const Coord c = label3d_detail::unravel(i, e);
    const bool left = c.x > 0 && mask[i - 1];
    for (int k = 0; k < nb; ++k) {
      if (left && !label3d_detail::visit_besides_left(k, connectivity)) continue;
      const int64_t j = label3d_detail::backward_neighbour(i, c, e, k);
      if (j >= 0 && mask[j]) unite(lab, static_cast<int32_t>(i), static_cast<int32_t>(j));
    }
  }
}

// After merging, parents are final; path compression writes roots, which are valid
// ancestors for any thread still walking through this voxel.
__global__ void compress_kernel(int32_t* lab, int32_t* is_root, int64_t n) {
  DFDC_GRID_STRIDE(i, n) {
    int32_t x = lab[i];
    if (x < 0) {
      is_root[i] = 0;
      continue;
    }
    is_root[i] = (x == i);
    while (true) {
      const int32_t p = lab[x];
      if (p == x) break;
      x = p;
    }
    lab[i] = x;
  }
}

// rank[r] is the inclusive count of roots up to r in the flattened batch; subtracting
// the count before this batch element numbers its components 1..n in raster order.
__global__ void relabel_kernel(int32_t* lab, const int32_t* __restrict__ rank,
                               const int32_t* __restrict__ before, int64_t n, int64_t V) {
  DFDC_GRID_STRIDE(i, n) {
    const int32_t root = lab[i];
    lab[i] = root < 0 ? 0 : rank[root] - before[i / V];
  }
}

std::tuple<at::Tensor, at::Tensor> label3d_cuda(const at::Tensor& mask, int64_t connectivity) {
  TORCH_CHECK(mask.is_cuda(), "label3d_cuda: expected a CUDA tensor, got ", mask.device());
  check_label3d_args(mask, connectivity);
  TORCH_CHECK(mask.numel() < std::numeric_limits<int32_t>::max(),
              "label3d (CUDA): a batch may hold at most 2^31 - 2 voxels, got shape ", mask.sizes(),
              "; split the batch");
  at::cuda::CUDAGuard guard(mask.device());
  const auto m = mask.contiguous();
  const int64_t B = m.size(0);
  const Extent e{m.size(1), m.size(2), m.size(3)};
  const int64_t V = e.T * e.H * e.W;
  const int64_t n = m.numel();
  auto labels = at::empty(m.sizes(), m.options().dtype(at::kInt));
  if (n == 0) return {labels, at::zeros({B}, m.options().dtype(at::kLong))};

  auto stream = at::cuda::getCurrentCUDAStream();
  const auto* mp = static_cast<const uint8_t*>(m.data_ptr());
  auto* lp = labels.data_ptr<int32_t>();
  auto is_root = at::empty({n}, m.options().dtype(at::kInt));
  const int blocks = blocks_for(n);

  init_kernel<<<blocks, kThreads, 0, stream>>>(mp, lp, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  merge_kernel<<<blocks, kThreads, 0, stream>>>(mp, lp, e, n, connectivity);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  compress_kernel<<<blocks, kThreads, 0, stream>>>(lp, is_root.data_ptr<int32_t>(), n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  const auto rank = at::cumsum(is_root, 0, at::kInt);
  const auto ends = rank.view({B, V}).select(1, V - 1);  // roots up to the end of each element
  auto before = at::zeros({B}, ends.options());
  if (B > 1) before.slice(0, 1).copy_(ends.slice(0, 0, B - 1));
  const auto num = (ends - before).to(at::kLong);

  relabel_kernel<<<blocks, kThreads, 0, stream>>>(lp, rank.data_ptr<int32_t>(),
                                                   before.data_ptr<int32_t>(), n, V);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {labels, num};
}

__device__ __forceinline__ void flush_run(int32_t* box, int32_t* cnt, int64_t L, int64_t b,
                                          int32_t label, int32_t t, int32_t y, int32_t x0,
                                          int32_t x1) {
  if (label < 1 || label > L) return;
  const int64_t k = b * L + (label - 1);
  int32_t* r = box + k * 6;
  atomicMin(r + 0, t);
  atomicMax(r + 1, t + 1);
  atomicMin(r + 2, y);
  atomicMax(r + 3, y + 1);
  atomicMin(r + 4, x0);
  atomicMax(r + 5, x1);
  atomicAdd(cnt + k, x1 - x0);
}

// One thread per segment of a row: runs of one label are reduced in registers and
// flushed with one set of atomics, so a large component does not serialise on
// atomics voxel by voxel.
constexpr int kSegment = 32;

__global__ void stats_kernel(const int32_t* __restrict__ lab, Extent e, int64_t L, int32_t* box,
                             int32_t* cnt, int64_t num_segments, int64_t segments_per_row) {
  DFDC_GRID_STRIDE(s, num_segments) {
    const int64_t row = s / segments_per_row;
    const int32_t x_begin = static_cast<int32_t>((s % segments_per_row) * kSegment);
    const int32_t x_end = static_cast<int32_t>(e.W < x_begin + kSegment ? e.W : x_begin + kSegment);
    const int32_t y = static_cast<int32_t>(row % e.H);
    const int32_t t = static_cast<int32_t>((row / e.H) % e.T);
    const int64_t b = row / (e.H * e.T);
    const int32_t* p = lab + row * e.W;
    int32_t current = p[x_begin], start = x_begin;
    for (int32_t x = x_begin + 1; x < x_end; ++x) {
      const int32_t v = p[x];
      if (v == current) continue;
      flush_run(box, cnt, L, b, current, t, y, start, x);
      current = v;
      start = x;
    }
    flush_run(box, cnt, L, b, current, t, y, start, x_end);
  }
}

std::tuple<at::Tensor, at::Tensor> component_stats_cuda(const at::Tensor& labels, int64_t num_labels) {
  TORCH_CHECK(labels.is_cuda(), "component_stats_cuda: expected a CUDA tensor, got ",
              labels.device());
  check_component_stats_args(labels, num_labels);
  at::cuda::CUDAGuard guard(labels.device());
  const auto lab = labels.contiguous();
  const int64_t B = lab.size(0), L = num_labels;
  const Extent e{lab.size(1), lab.size(2), lab.size(3)};
  const auto opts = lab.options().dtype(at::kInt);
  if (B * L == 0 || lab.numel() == 0) {
    return {at::zeros({B, L, 6}, opts.dtype(at::kLong)), at::zeros({B, L}, opts.dtype(at::kLong))};
  }
  constexpr int32_t kMax = std::numeric_limits<int32_t>::max();
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  auto box = at::empty({B, L, 6}, opts);  // filled on the device: mins start high, maxes low
  for (int k = 0; k < 6; ++k) box.select(2, k).fill_(k % 2 == 0 ? kMax : kMin);
  auto cnt = at::zeros({B, L}, opts);
  const int64_t segments_per_row = (e.W + kSegment - 1) / kSegment;
  const int64_t num_segments = B * e.T * e.H * segments_per_row;
  stats_kernel<<<blocks_for(num_segments), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      lab.data_ptr<int32_t>(), e, L, box.data_ptr<int32_t>(), cnt.data_ptr<int32_t>(), num_segments,
      segments_per_row);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto boxes = box.to(at::kLong).masked_fill_(cnt.eq(0).unsqueeze(-1), 0);
  return {boxes, cnt.to(at::kLong)};
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CUDA, m) {
  m.impl("label3d", &label3d_cuda);
  m.impl("component_stats", &component_stats_cuda);
}

}  // namespace dfdc_fast
