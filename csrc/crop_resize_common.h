// The arithmetic of crop_resize, shared by the CPU and CUDA kernels so both compute
// exactly the same thing.
//
// One output image per region of interest (ROI). A ROI names a frame, a window of it
// (display coordinates, half-open), where that window sits in a zero canvas, and the
// size the canvas is resized to. Pixels are read from packed RGB or from YUV 4:2:0
// (NV12 or I420) and converted to RGB first with swscale's integer arithmetic, so they
// equal what PyAV and OpenCV return for the same decoded YUV, bit for bit; the canvas is
// then resampled per axis the way torch.nn.functional.interpolate does: "area" (adaptive
// average pooling) when the axis shrinks, "bilinear" or "bicubic" (align_corners=False)
// when it grows, a copy when it keeps its length.
#pragma once

#include <cmath>
#include <cstdint>
#if defined(__SSE__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

#ifdef __CUDACC__
#define DFDC_HD __host__ __device__ __forceinline__
#else
#define DFDC_HD inline
#endif

namespace dfdc_fast {
namespace crop_resize_detail {

enum Layout : int64_t { kRGB = 0, kNV12 = 1, kI420 = 2 };
enum UpMode : int64_t { kBilinear = 0, kBicubic = 1 };

// ROI columns (int64 rows of the rois tensor).
enum RoiField : int {
  kFrame = 0,   // frame index into the frames tensor
  kX0, kY0, kX1, kY1,  // window in display pixels, half-open, inside the frame
  kOX, kOY,     // top-left of the window inside the canvas
  kCW, kCH,     // canvas size (zeros outside the window)
  kOW, kOH,     // size the canvas is resized to
  kDX, kDY,     // where that lands in the (out_h, out_w) output image; the rest is zero
  kRoiFields
};

// FFmpeg's YUV->RGB coefficients (libswscale's ff_yuv2rgb_coeffs, 16.16 fixed point,
// limited range): crv, cbu, cgu, cgv for BT.601, BT.709 and BT.2020.
constexpr int64_t kYuvCoeffs[3][4] = {
    {104597, 132201, 25675, 53279},  // BT.601 (and unspecified: what swscale assumes)
    {117489, 138438, 13975, 34925},  // BT.709
    {110013, 140363, 12277, 42626},  // BT.2020
};

struct Source {
  const uint8_t* data;
  int64_t frame_stride;  // elements per frame
  int64_t coded_h, coded_w;  // size of the stored frames (before rotation)
  int64_t layout;
  int64_t rotation;  // counter-clockwise quarter turns applied for display (0..3)
  // swscale's integer conversion (its x86 SIMD path, what PyAV and OpenCV return):
  // y' = ((8 Y - y_off) * y_c) >> 16, then R = y' + ((8 V - 1024) * r_c) >> 16, ...
  int32_t y_off, y_c, r_c, b_c, gu_c, gv_c;
};

inline int32_t round_q13(int64_t c16) { return static_cast<int32_t>((c16 * 8192 + 32768) >> 16); }

// Host only: the launchers build a Source and pass it to the kernels by value.
inline Source make_source(const uint8_t* data, int64_t frame_stride, int64_t coded_h, int64_t coded_w,
                           int64_t layout, int64_t rotation, int64_t matrix, bool full_range) {
  Source s;
  s.data = data;
  s.frame_stride = frame_stride;
  s.coded_h = coded_h;
  s.coded_w = coded_w;
  s.layout = layout;
  s.rotation = rotation;
  const int64_t* k = kYuvCoeffs[matrix < 0 || matrix > 2 ? 0 : matrix];
  int64_t crv = k[0], cbu = k[1], cgu = k[2], cgv = k[3], cy = 1 << 16;
  if (full_range) {
    crv = crv * 224 / 255, cbu = cbu * 224 / 255, cgu = cgu * 224 / 255, cgv = cgv * 224 / 255;
  } else {
    cy = cy * 255 / 219;
  }
  s.y_off = full_range ? 0 : 16 * 8;
  s.y_c = round_q13(cy);
  s.r_c = round_q13(crv);
  s.b_c = round_q13(cbu);
  s.gu_c = -round_q13(cgu);
  s.gv_c = -round_q13(cgv);
  return s;
}

DFDC_HD int32_t clamp_byte(int32_t v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

// One pixel from its Y, U, V bytes, exactly as swscale converts (arithmetic shifts floor).
DFDC_HD void yuv_to_rgb(const Source& s, int32_t y, int32_t u, int32_t v, float rgb[3]) {
  const int32_t yy = ((y * 8 - s.y_off) * s.y_c) >> 16;
  const int32_t uu = u * 8 - 1024, vv = v * 8 - 1024;
  rgb[0] = static_cast<float>(clamp_byte(yy + ((vv * s.r_c) >> 16)));
  rgb[1] = static_cast<float>(clamp_byte(yy + ((uu * s.gu_c) >> 16) + ((vv * s.gv_c) >> 16)));
  rgb[2] = static_cast<float>(clamp_byte(yy + ((uu * s.b_c) >> 16)));
}

DFDC_HD float round_clamp(float v) {
#ifdef __CUDACC__
  return fminf(fmaxf(rintf(v), 0.f), 255.f);  // rintf: half to even, as torch.round
#else
  // Half to even without a libm call: adding 1.5 * 2^23 leaves no fraction bits, so the
  // FPU's default rounding (to nearest, ties to even) rounds; valid for |v| < 2^22.
  // (Compiled without -ffast-math, so the two operations are not folded away.) The
  // clamps are maxss/minss: a plain comparison compiles to a branch (signed zeros),
  // which random pixel values mispredict.
  v = (v + 12582912.f) - 12582912.f;
#if defined(__SSE__)
  return _mm_cvtss_f32(_mm_min_ss(_mm_max_ss(_mm_set_ss(v), _mm_setzero_ps()), _mm_set_ss(255.f)));
#else
  v = v > 0.f ? v : 0.f;
  return v < 255.f ? v : 255.f;
#endif
#endif
}

// One display pixel (x, y) of frame t as RGB values 0..255 (integers, as floats).
DFDC_HD void pixel(const Source& s, int64_t t, int64_t x, int64_t y, float rgb[3]) {
  int64_t xc = x, yc = y;
  switch (s.rotation) {  // display -> coded, the inverse of torch.rot90(frames, k, dims=(1, 2))
    case 1: yc = x; xc = s.coded_w - 1 - y; break;
    case 2: yc = s.coded_h - 1 - y; xc = s.coded_w - 1 - x; break;
    case 3: yc = s.coded_h - 1 - x; xc = y; break;
    default: break;
  }
  const uint8_t* f = s.data + t * s.frame_stride;
  if (s.layout == kRGB) {
    const uint8_t* p = f + (yc * s.coded_w + xc) * 3;
    rgb[0] = p[0], rgb[1] = p[1], rgb[2] = p[2];
    return;
  }
  const uint8_t* chroma = f + s.coded_h * s.coded_w;
  int32_t u, v;
  if (s.layout == kNV12) {
    const uint8_t* p = chroma + (yc >> 1) * s.coded_w + (xc >> 1) * 2;
    u = p[0], v = p[1];
  } else {  // I420: a U plane then a V plane, each (h/2, w/2)
    const int64_t cw = s.coded_w >> 1, ch = s.coded_h >> 1;
    const int64_t i = (yc >> 1) * cw + (xc >> 1);
    u = chroma[i], v = chroma[ch * cw + i];
  }
  yuv_to_rgb(s, f[yc * s.coded_w + xc], u, v, rgb);
}

// Canvas pixel: the window's pixel where the window lies, 0 elsewhere.
DFDC_HD void canvas_pixel(const Source& s, const int64_t* roi, int64_t cx, int64_t cy, float rgb[3]) {
  const int64_t x = cx - roi[kOX], y = cy - roi[kOY];
  if (x < 0 || y < 0 || x >= roi[kX1] - roi[kX0] || y >= roi[kY1] - roi[kY0]) {
    rgb[0] = rgb[1] = rgb[2] = 0.f;
    return;
  }
  pixel(s, roi[kFrame], roi[kX0] + x, roi[kY0] + y, rgb);
}

// Taps of one output coordinate along one axis: up to `kMaxTaps` explicit (index, weight)
// pairs for bilinear/bicubic/copy, or an [begin, end) range averaged for area.
constexpr int kMaxTaps = 4;

struct Taps {
  int64_t index[kMaxTaps];
  float weight[kMaxTaps];
  int n;           // explicit taps; 0 means "area over [begin, end)"
  int64_t begin, end;
};

DFDC_HD float cubic1(float x, float a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }        // |x| <= 1
DFDC_HD float cubic2(float x, float a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }  // 1 < |x| < 2

DFDC_HD int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

DFDC_HD Taps axis_taps(int64_t out_i, int64_t in_len, int64_t out_len, int64_t up_mode) {
  Taps t;
  t.n = 0;
  t.begin = t.end = 0;
  if (in_len == out_len) {
    t.n = 1, t.index[0] = out_i, t.weight[0] = 1.f;
  } else if (in_len > out_len) {  // adaptive average pooling bins, as aten's start/end_index
    t.begin = (out_i * in_len) / out_len;
    t.end = ((out_i + 1) * in_len + out_len - 1) / out_len;
  } else {
    const float scale = static_cast<float>(in_len) / static_cast<float>(out_len);
    if (up_mode == kBicubic) {
      const float real = scale * (out_i + 0.5f) - 0.5f;
      const int64_t i0 = static_cast<int64_t>(floorf(real));
      const float d = real - static_cast<float>(i0);
      const float a = -0.75f;
      const float w[4] = {cubic2(d + 1.f, a), cubic1(d, a), cubic1(1.f - d, a), cubic2(2.f - d, a)};
      t.n = 4;
      for (int k = 0; k < 4; ++k) t.index[k] = clamp_index(i0 - 1 + k, in_len), t.weight[k] = w[k];
    } else {
      float real = scale * (out_i + 0.5f) - 0.5f;
      if (real < 0.f) real = 0.f;
      const int64_t i0 = static_cast<int64_t>(real);
      const float lambda = real - static_cast<float>(i0);
      t.n = 2;
      t.index[0] = i0, t.weight[0] = 1.f - lambda;
      t.index[1] = i0 + (i0 < in_len - 1 ? 1 : 0), t.weight[1] = lambda;
    }
  }
  return t;
}

// One output pixel (px, py) of ROI `roi` into out[0..2].
DFDC_HD void output_pixel(const Source& s, const int64_t* roi, int64_t px, int64_t py, int64_t up_mode,
                          uint8_t* out) {
  const int64_t ox = px - roi[kDX], oy = py - roi[kDY];
  if (ox < 0 || oy < 0 || ox >= roi[kOW] || oy >= roi[kOH]) {
    out[0] = out[1] = out[2] = 0;
    return;
  }
  const Taps ty = axis_taps(oy, roi[kCH], roi[kOH], up_mode);
  const Taps tx = axis_taps(ox, roi[kCW], roi[kOW], up_mode);
  float acc[3] = {0.f, 0.f, 0.f};
  float rgb[3];
  if (ty.n == 0 && tx.n == 0) {  // area on both axes: integer sums, divided like aten does
    for (int64_t y = ty.begin; y < ty.end; ++y)
      for (int64_t x = tx.begin; x < tx.end; ++x) {
        canvas_pixel(s, roi, x, y, rgb);
        acc[0] += rgb[0], acc[1] += rgb[1], acc[2] += rgb[2];
      }
    const float kh = static_cast<float>(ty.end - ty.begin), kw = static_cast<float>(tx.end - tx.begin);
    for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(round_clamp(acc[c] / kh / kw));
    return;
  }
  // General separable case: each axis is explicit taps or an area range.
  const int ny = ty.n ? ty.n : static_cast<int>(ty.end - ty.begin);
  const int nx = tx.n ? tx.n : static_cast<int>(tx.end - tx.begin);
  const float area_wy = ty.n ? 0.f : 1.f / static_cast<float>(ty.end - ty.begin);
  const float area_wx = tx.n ? 0.f : 1.f / static_cast<float>(tx.end - tx.begin);
  for (int j = 0; j < ny; ++j) {
    const int64_t y = ty.n ? ty.index[j] : ty.begin + j;
    const float wy = ty.n ? ty.weight[j] : area_wy;
    float row[3] = {0.f, 0.f, 0.f};
    for (int i = 0; i < nx; ++i) {
      const int64_t x = tx.n ? tx.index[i] : tx.begin + i;
      const float wx = tx.n ? tx.weight[i] : area_wx;
      canvas_pixel(s, roi, x, y, rgb);
      row[0] += wx * rgb[0], row[1] += wx * rgb[1], row[2] += wx * rgb[2];
    }
    acc[0] += wy * row[0], acc[1] += wy * row[1], acc[2] += wy * row[2];
  }
  for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(round_clamp(acc[c]));
}

}  // namespace crop_resize_detail
}  // namespace dfdc_fast
