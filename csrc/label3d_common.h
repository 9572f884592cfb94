// Index arithmetic shared by the CPU and CUDA kernels of label3d, so that both
// walk exactly the same neighbourhoods (the CPU kernel is the test oracle).
//
// Masks are batched (B, T, H, W) and flattened; a voxel's global index is
// ((b * T + t) * H + y) * W + x. Components never cross batch elements because
// neighbours are found from (t, y, x) coordinates bounded by the mask's extent.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define DFDC_HD __host__ __device__ __forceinline__
#else
#define DFDC_HD inline
#endif

namespace dfdc_fast {
namespace label3d_detail {

// Backward neighbour offsets (dt, dy, dx): those that come before the centre voxel
// in raster order. Uniting each voxel with its foreground backward neighbours
// visits every edge of the neighbourhood graph exactly once.
// Order: the 6-connected faces first, then the 18-connected edges, then the 26
// corners, so `num_backward(connectivity)` takes a prefix.
DFDC_HD void backward_offset(int k, int& dt, int& dy, int& dx) {
  // A switch rather than a table: namespace-scope arrays are not visible in device code.
  switch (k) {
    // faces (|d|^2 = 1)
    case 0: dt = 0; dy = 0; dx = -1; return;
    case 1: dt = 0; dy = -1; dx = 0; return;
    case 2: dt = -1; dy = 0; dx = 0; return;
    // edges (|d|^2 = 2)
    case 3: dt = 0; dy = -1; dx = -1; return;
    case 4: dt = 0; dy = -1; dx = 1; return;
    case 5: dt = -1; dy = 0; dx = -1; return;
    case 6: dt = -1; dy = 0; dx = 1; return;
    case 7: dt = -1; dy = -1; dx = 0; return;
    case 8: dt = -1; dy = 1; dx = 0; return;
    // corners (|d|^2 = 3)
    case 9: dt = -1; dy = -1; dx = -1; return;
    case 10: dt = -1; dy = -1; dx = 1; return;
    case 11: dt = -1; dy = 1; dx = -1; return;
    default: dt = -1; dy = 1; dx = 1; return;
  }
}

// Number of backward neighbours for 6-, 18- or 26-connectivity (0 for anything else).
DFDC_HD int num_backward(int64_t connectivity) {
  return connectivity == 6 ? 3 : connectivity == 18 ? 9 : connectivity == 26 ? 13 : 0;
}

// When the left neighbour (0, 0, -1) is foreground, the voxel will be united with it,
// and the left neighbour was itself united with all of its own foreground backward
// neighbours. Neighbour k can then be skipped when it is one of those: for 26-
// connectivity only the 4 neighbours at dx = +1 remain (5 visits instead of 13).
DFDC_HD bool visit_besides_left(int k, int64_t connectivity) {
  if (k == 0) return true;  // the left neighbour itself
  int dt, dy, dx;
  backward_offset(k, dt, dy, dx);
  const int ex = dx + 1;  // the offset seen from the left neighbour
  const int level = connectivity == 6 ? 1 : connectivity == 18 ? 2 : 3;
  const int sq = dt * dt + dy * dy + ex * ex;
  const bool backward_of_left = dt < 0 || (dt == 0 && (dy < 0 || (dy == 0 && ex < 0)));
  return !(sq >= 1 && sq <= level && backward_of_left);
}

struct Extent {
  int64_t T, H, W;
};

struct Coord {
  int64_t b, t, y, x;
};

DFDC_HD Coord unravel(int64_t i, const Extent& e) {
  Coord c;
  c.x = i % e.W;
  int64_t r = i / e.W;
  c.y = r % e.H;
  r /= e.H;
  c.t = r % e.T;
  c.b = r / e.T;
  return c;
}

// Global index of the k-th backward neighbour of voxel i at c, or -1 when it lies outside the mask.
DFDC_HD int64_t backward_neighbour(int64_t i, const Coord& c, const Extent& e, int k) {
  int dt, dy, dx;
  backward_offset(k, dt, dy, dx);
  const int64_t t = c.t + dt, y = c.y + dy, x = c.x + dx;
  if (t < 0 || y < 0 || y >= e.H || x < 0 || x >= e.W) return -1;
  return i + (dt * e.H + dy) * e.W + dx;
}

}  // namespace label3d_detail
}  // namespace dfdc_fast
