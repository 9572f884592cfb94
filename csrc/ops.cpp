// Schemas of every native op in dfdc_fast, in one place (the torchvision layout:
// schema here, one kernel per backend in csrc/cpu and csrc/cuda, registered by key).
//
// label3d: connected-component labelling of a batch of 3D masks (B, T, H, W) with
//   6-, 18- or 26-connectivity. Labels are int32, numbered 1..n per mask in raster order
//   of each component's first voxel (equal to skimage.measure.label); 0 is background.
//   num_labels is int64 (B,) and stays on the device.
// component_stats: per-label bounding boxes (B, L, 6) = (t0, t1, y0, y1, x0, x1),
//   half-open, and voxel counts (B, L), both int64; L is given by the caller (the one
//   value that needs the host), labels above it are ignored, and unused rows are 0.
// crop_resize: regions of video frames (packed RGB, or YUV 4:2:0 as NV12 or I420, with
//   the display rotation applied on the fly) converted to RGB exactly as FFmpeg's swscale
//   does (matrix: 0 BT.601, 1 BT.709, 2 BT.2020), placed in a zero canvas
//   and resized (area down, bilinear or bicubic up), one uint8 (out_h, out_w, 3) image
//   per row of rois; see crop_resize_common.h for the ROI columns. One call serves the
//   detector's downscaled frames, every face clip of a video and every 2D crop.
// nms_padded: exact greedy NMS of each set of a padded batch. boxes (B, K, 4) as
//   (x0, y0, x1, y1), each set sorted by decreasing score; valid (B, K) bool marks the
//   real boxes. Returns keep (B, K) bool on the same device: box k of set b is kept when
//   it is valid and no kept, earlier box of its set overlaps it by more than threshold.
//   mode "iou": intersection over union with torchvision's areas ((x1 - x0) * (y1 - y0));
//   "min": intersection over the smaller area with MTCNN's +1 pixel convention (and the
//   ratio compared with the threshold in the boxes' precision, as numpy does there).
#include <torch/extension.h>
#ifdef WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION
#endif

TORCH_LIBRARY(dfdc_fast, m) {
  m.def("label3d(Tensor mask, int connectivity=26) -> (Tensor labels, Tensor num_labels)");
  m.def("component_stats(Tensor labels, int num_labels) -> (Tensor boxes, Tensor counts)");
  m.def(
      "crop_resize(Tensor frames, int layout, Tensor rois, int out_h, int out_w, int matrix=0, "
      "bool full_range=False, int rotation=0, int up_mode=0) -> Tensor");
  m.def("nms_padded(Tensor boxes, Tensor valid, float threshold, str mode=\"iou\") -> Tensor keep");
}

namespace dfdc_fast {

// CUDA version the extension was compiled against (e.g. 13000), or -1 for a CPU-only build.
int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDART_VERSION;
#else
  return -1;
#endif
}

}  // namespace dfdc_fast

// Importing `dfdc_fast._C` runs the static registrations above and in the kernels.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cuda_version", &dfdc_fast::cuda_version,
        "CUDA version the extension was built with, -1 for a CPU-only build");
}
