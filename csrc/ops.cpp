// Schemas of every native op in dfdc_fast, in one place (the torchvision layout:
// schema here, one kernel per backend in csrc/cpu and csrc/cuda, registered by key).
//
// `build_check` is a deliberately trivial op (x + 1) that proves the build, the
// registration and the dispatch path on CPU and CUDA. It is replaced by the 3D
// connected-component op of the tracker.
#include <torch/extension.h>
#ifdef WITH_CUDA
#include <cuda_runtime_api.h>  // CUDART_VERSION
#endif

TORCH_LIBRARY(dfdc_fast, m) {
  m.def("build_check(Tensor x) -> Tensor");
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
