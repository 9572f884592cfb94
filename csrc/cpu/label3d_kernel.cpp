// CPU kernels of label3d and component_stats: a two-pass union-find, one batch
// element per task. This kernel is the oracle the CUDA kernel is tested against.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstring>

#include "../label3d_checks.h"
#include "../label3d_common.h"

namespace dfdc_fast {
namespace {

using label3d_detail::Coord;
using label3d_detail::Extent;

// Eight mask bytes at once: most of a face mask is background, skipped a word at a time.
inline bool eight_background(const uint8_t* m) {
  uint64_t word;
  std::memcpy(&word, m, sizeof(word));
  return word == 0;
}

int32_t find_root(int32_t* parent, int32_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];  // path halving
    x = parent[x];
  }
  return x;
}

// Labels one (T, H, W) mask into `lab`, which must hold zeros; returns the number of
// components. Only foreground voxels are visited and written (background stays 0).
// A root is always the smallest index of its tree, so the second pass numbers
// components in raster order of their first voxel, as skimage.measure.label does.
int64_t label_one(const uint8_t* mask, int32_t* lab, const Extent& e, int64_t connectivity) {
  const int64_t V = e.T * e.H * e.W;
  const int nb = label3d_detail::num_backward(connectivity);
  // Neighbours to visit (k, and their index offset for voxels away from the border)
  // with the left neighbour in the background, and with it in the foreground.
  int all_k[13], rest_k[13];
  int64_t all_off[13], rest_off[13];
  int n_all = 0, n_rest = 0;
  for (int k = 0; k < nb; ++k) {
    int dt, dy, dx;
    label3d_detail::backward_offset(k, dt, dy, dx);
    const int64_t off = (dt * e.H + dy) * e.W + dx;
    all_k[n_all] = k, all_off[n_all++] = off;
    if (k != 0 && label3d_detail::visit_besides_left(k, connectivity))
      rest_k[n_rest] = k, rest_off[n_rest++] = off;
  }
  Coord c{0, 0, 0, 0};
  int64_t i = 0;
  for (c.t = 0; c.t < e.T; ++c.t)
    for (c.y = 0; c.y < e.H; ++c.y)
      for (c.x = 0; c.x < e.W; ++c.x, ++i) {
        if (!mask[i]) {
          if ((c.x & 7) == 0 && c.x + 8 <= e.W && eight_background(mask + i)) c.x += 7, i += 7;
          continue;
        }
        // r: the root of voxel i so far. The first foreground neighbour gives it
        // directly; only a neighbour in another tree costs a union.
        int32_t r = -1;
        const bool left = c.x > 0 && mask[i - 1];
        if (left) r = find_root(lab, static_cast<int32_t>(i - 1));
        const int n_visit = left ? n_rest : n_all;
        const int* ks = left ? rest_k : all_k;
        const int64_t* offs = left ? rest_off : all_off;
        const bool interior = c.t > 0 && c.y > 0 && c.y + 1 < e.H && c.x > 0 && c.x + 1 < e.W;
        for (int j = 0; j < n_visit; ++j) {
          const int64_t n = interior ? i + offs[j] : label3d_detail::backward_neighbour(i, c, e, ks[j]);
          if (n < 0 || !mask[n]) continue;
          const int32_t rn = find_root(lab, static_cast<int32_t>(n));
          if (r < 0 || rn == r) {
            r = rn;
          } else if (rn < r) {
            lab[r] = rn;
            r = rn;
          } else {
            lab[rn] = r;
          }
        }
        lab[i] = r < 0 ? static_cast<int32_t>(i) : r;
      }
  // Every parent index is smaller than its child's, so when voxel i is reached
  // its parent already holds its final label.
  int32_t count = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (!mask[i]) {
      if ((i & 7) == 0 && i + 8 <= V && eight_background(mask + i)) i += 7;
      continue;
    }
    const int32_t p = lab[i];
    lab[i] = p == i ? ++count : lab[p];
  }
  return count;
}

std::tuple<at::Tensor, at::Tensor> label3d_cpu(const at::Tensor& mask, int64_t connectivity) {
  TORCH_CHECK(mask.device().is_cpu(), "label3d_cpu: expected a CPU tensor, got ", mask.device());
  check_label3d_args(mask, connectivity);
  const auto m = mask.contiguous();
  const int64_t B = m.size(0);
  const Extent e{m.size(1), m.size(2), m.size(3)};
  const int64_t V = e.T * e.H * e.W;
  auto labels = at::zeros(m.sizes(), m.options().dtype(at::kInt));
  auto num = at::zeros({B}, m.options().dtype(at::kLong));
  if (V == 0 || B == 0) return {labels, num};

  const auto* mp = static_cast<const uint8_t*>(m.data_ptr());  // bool is one byte
  auto* lp = labels.data_ptr<int32_t>();
  auto* np = num.data_ptr<int64_t>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) np[b] = label_one(mp + b * V, lp + b * V, e, connectivity);
  });
  return {labels, num};
}

// Boxes (B, L, 6) as (t0, t1, y0, y1, x0, x1), half-open, and voxel counts (B, L).
// Labels outside 1..num_labels are ignored (the CUDA kernel does the same).
std::tuple<at::Tensor, at::Tensor> component_stats_cpu(const at::Tensor& labels, int64_t num_labels) {
  TORCH_CHECK(labels.device().is_cpu(), "component_stats_cpu: expected a CPU tensor, got ",
              labels.device());
  check_component_stats_args(labels, num_labels);
  const auto lab = labels.contiguous();
  const int64_t B = lab.size(0), T = lab.size(1), H = lab.size(2), W = lab.size(3);
  const int64_t L = num_labels;
  auto boxes = at::zeros({B, L, 6}, lab.options().dtype(at::kLong));
  auto counts = at::zeros({B, L}, lab.options().dtype(at::kLong));
  if (B * L == 0) return {boxes, counts};
  const auto* lp = lab.data_ptr<int32_t>();
  auto* bp = boxes.data_ptr<int64_t>();
  auto* cp = counts.data_ptr<int64_t>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int32_t* l = lp + b * T * H * W;
      int64_t* box = bp + b * L * 6;
      int64_t* cnt = cp + b * L;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x, ++l) {
            const int64_t v = *l;
            if (v < 1 || v > L) continue;
            int64_t* r = box + (v - 1) * 6;
            if (cnt[v - 1]++ == 0) {
              r[0] = t, r[1] = t + 1, r[2] = y, r[3] = y + 1, r[4] = x, r[5] = x + 1;
              continue;
            }
            r[1] = t + 1;  // raster order: t never decreases
            r[2] = std::min(r[2], y), r[3] = std::max(r[3], y + 1);
            r[4] = std::min(r[4], x), r[5] = std::max(r[5], x + 1);
          }
    }
  });
  return {boxes, counts};
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CPU, m) {
  m.impl("label3d", &label3d_cpu);
  m.impl("component_stats", &component_stats_cpu);
}

}  // namespace dfdc_fast
