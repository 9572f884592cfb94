// CPU kernel of crop_resize: one ROI per task, separable.
//
// Each canvas row a ROI needs is converted to RGB once and resampled horizontally once;
// output rows then combine those rows vertically. The sums are taken in the same order
// as the per-pixel CUDA kernel (crop_resize_common.h), so both give the same bits.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "../crop_resize_checks.h"
#include "../crop_resize_common.h"

namespace dfdc_fast {
namespace {

using namespace crop_resize_detail;

// Display pixels [x0, x0 + n) of row y of frame t into rgb (3 floats each). Unrotated
// frames take a straight loop over the planes; rotated ones go pixel by pixel.
void convert_row(const Source& s, int64_t t, int64_t y, int64_t x0, int64_t n, float* rgb) {
  if (s.rotation != 0 || s.layout == kRGB) {
    if (s.rotation == 0) {  // packed RGB: a copy
      const uint8_t* p = s.data + t * s.frame_stride + (y * s.coded_w + x0) * 3;
      for (int64_t i = 0; i < n * 3; ++i) rgb[i] = p[i];
      return;
    }
    for (int64_t i = 0; i < n; ++i) pixel(s, t, x0 + i, y, rgb + i * 3);
    return;
  }
  const uint8_t* f = s.data + t * s.frame_stride;
  const uint8_t* luma = f + y * s.coded_w;
  const uint8_t* chroma = f + s.coded_h * s.coded_w;
  const uint8_t *u_row, *v_row;
  int64_t step;
  if (s.layout == kNV12) {
    u_row = chroma + (y >> 1) * s.coded_w, v_row = u_row + 1, step = 2;
  } else {
    const int64_t cw = s.coded_w >> 1, ch = s.coded_h >> 1;
    u_row = chroma + (y >> 1) * cw, v_row = chroma + ch * cw + (y >> 1) * cw, step = 1;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x = x0 + i, c = (x >> 1) * step;
    yuv_to_rgb(s, luma[x], u_row[c], v_row[c], rgb + i * 3);
  }
}

void one_roi(const Source& src, const int64_t* roi, int64_t out_h, int64_t out_w, int64_t up_mode, uint8_t* out) {
  const int64_t cw = roi[kCW], ch = roi[kCH], ow = roi[kOW], oh = roi[kOH];
  std::fill(out, out + out_h * out_w * 3, uint8_t(0));
  if (ow <= 0 || oh <= 0 || cw <= 0 || ch <= 0) return;
  const bool x_area = cw > ow, y_area = ch > oh, plain_sum = x_area && y_area;
  std::vector<Taps> tx(ow), ty(oh);
  for (int64_t i = 0; i < ow; ++i) tx[i] = axis_taps(i, cw, ow, up_mode);
  int64_t y_lo = ch, y_hi = -1;  // canvas rows any output row reads
  for (int64_t i = 0; i < oh; ++i) {
    ty[i] = axis_taps(i, ch, oh, up_mode);
    if (ty[i].n == 0) {
      y_lo = std::min(y_lo, ty[i].begin), y_hi = std::max(y_hi, ty[i].end - 1);
    } else {
      for (int k = 0; k < ty[i].n; ++k) y_lo = std::min(y_lo, ty[i].index[k]), y_hi = std::max(y_hi, ty[i].index[k]);
    }
  }
  const int64_t win_x0 = roi[kOX], win_x1 = roi[kOX] + (roi[kX1] - roi[kX0]);
  const int64_t win_y0 = roi[kOY], win_y1 = roi[kOY] + (roi[kY1] - roi[kY0]);
  // Scratch reused across ROIs of a thread (fresh multi-MB buffers per ROI cost page faults).
  thread_local std::vector<float> line_buf, hpass_buf;
  if (static_cast<int64_t>(line_buf.size()) < cw * 3) line_buf.resize(cw * 3);
  float* line = line_buf.data();
  if (cw == ow && ch == oh) {  // same size on both axes: convert and copy
    for (int64_t cy = 0; cy < ch; ++cy) {
      const int64_t py = cy + roi[kDY];
      if (py < 0 || py >= out_h) continue;
      std::fill(line, line + cw * 3, 0.f);
      const int64_t cx0 = std::max<int64_t>(win_x0, 0), cx1 = std::min(win_x1, cw);
      if (cy >= win_y0 && cy < win_y1 && cx1 > cx0)
        convert_row(src, roi[kFrame], roi[kY0] + cy - win_y0, roi[kX0] + cx0 - win_x0, cx1 - cx0, line + cx0 * 3);
      for (int64_t cx = 0; cx < cw; ++cx) {
        const int64_t px = cx + roi[kDX];
        if (px < 0 || px >= out_w) continue;
        uint8_t* o = out + (py * out_w + px) * 3;
        o[0] = static_cast<uint8_t>(line[cx * 3]), o[1] = static_cast<uint8_t>(line[cx * 3 + 1]);
        o[2] = static_cast<uint8_t>(line[cx * 3 + 2]);
      }
    }
    return;
  }
  // Canvas row -> RGB -> horizontal pass, for every row read.
  const int64_t rows = y_hi - y_lo + 1;
  if (static_cast<int64_t>(hpass_buf.size()) < rows * ow * 3) hpass_buf.resize(rows * ow * 3);
  float* hpass = hpass_buf.data();
  for (int64_t cy = y_lo; cy <= y_hi; ++cy) {
    std::fill(line, line + cw * 3, 0.f);
    if (cy >= win_y0 && cy < win_y1) {
      const int64_t cx0 = std::max<int64_t>(win_x0, 0), cx1 = std::min(win_x1, cw);
      if (cx1 > cx0)
        convert_row(src, roi[kFrame], roi[kY0] + cy - win_y0, roi[kX0] + cx0 - win_x0, cx1 - cx0, line + cx0 * 3);
    }
    float* h = &hpass[(cy - y_lo) * ow * 3];
    for (int64_t ox = 0; ox < ow; ++ox) {
      const Taps& t = tx[ox];
      float acc[3] = {0.f, 0.f, 0.f};
      if (t.n == 0) {
        const float w = plain_sum ? 1.f : 1.f / static_cast<float>(t.end - t.begin);
        for (int64_t x = t.begin; x < t.end; ++x) {
          const float* p = line + x * 3;
          if (plain_sum) {
            acc[0] += p[0], acc[1] += p[1], acc[2] += p[2];
          } else {
            acc[0] += w * p[0], acc[1] += w * p[1], acc[2] += w * p[2];
          }
        }
      } else {
        for (int k = 0; k < t.n; ++k) {
          const float* p = line + t.index[k] * 3;
          const float w = t.weight[k];
          acc[0] += w * p[0], acc[1] += w * p[1], acc[2] += w * p[2];
        }
      }
      h[ox * 3] = acc[0], h[ox * 3 + 1] = acc[1], h[ox * 3 + 2] = acc[2];
    }
  }
  // Vertical pass into the output, at (dx, dy).
  for (int64_t oy = 0; oy < oh; ++oy) {
    const int64_t py = oy + roi[kDY];
    if (py < 0 || py >= out_h) continue;
    const Taps& t = ty[oy];
    for (int64_t ox = 0; ox < ow; ++ox) {
      const int64_t px = ox + roi[kDX];
      if (px < 0 || px >= out_w) continue;
      float acc[3] = {0.f, 0.f, 0.f};
      if (t.n == 0) {
        const float w = plain_sum ? 1.f : 1.f / static_cast<float>(t.end - t.begin);
        for (int64_t y = t.begin; y < t.end; ++y) {
          const float* r = hpass + ((y - y_lo) * ow + ox) * 3;
          if (plain_sum) {
            acc[0] += r[0], acc[1] += r[1], acc[2] += r[2];
          } else {
            acc[0] += w * r[0], acc[1] += w * r[1], acc[2] += w * r[2];
          }
        }
      } else {
        for (int k = 0; k < t.n; ++k) {
          const float* r = hpass + ((t.index[k] - y_lo) * ow + ox) * 3;
          const float w = t.weight[k];
          acc[0] += w * r[0], acc[1] += w * r[1], acc[2] += w * r[2];
        }
      }
      uint8_t* o = out + (py * out_w + px) * 3;
      if (plain_sum) {
        const float kh = static_cast<float>(t.end - t.begin), kw = static_cast<float>(tx[ox].end - tx[ox].begin);
        for (int c = 0; c < 3; ++c) o[c] = static_cast<uint8_t>(round_clamp(acc[c] / kh / kw));
      } else {
        for (int c = 0; c < 3; ++c) o[c] = static_cast<uint8_t>(round_clamp(acc[c]));
      }
    }
  }
}

at::Tensor crop_resize_cpu(const at::Tensor& frames, int64_t layout, const at::Tensor& rois, int64_t out_h,
                           int64_t out_w, int64_t matrix, bool full_range, int64_t rotation, int64_t up_mode) {
  const auto hw = check_crop_resize_args(frames, layout, rois, out_h, out_w, rotation, up_mode);
  const int64_t n = rois.size(0);
  at::Tensor out = at::empty({n, out_h, out_w, 3}, frames.options());
  if (n == 0) return out;
  const int64_t frame_stride = frames.numel() / std::max<int64_t>(frames.size(0), 1);
  const Source src = make_source(frames.data_ptr<uint8_t>(), frame_stride, hw.first, hw.second, layout, rotation,
                                 matrix, full_range);
  const int64_t* r = rois.data_ptr<int64_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) one_roi(src, r + i * kRoiFields, out_h, out_w, up_mode, o + i * out_h * out_w * 3);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CPU, m) { m.impl("crop_resize", &crop_resize_cpu); }

}  // namespace dfdc_fast
