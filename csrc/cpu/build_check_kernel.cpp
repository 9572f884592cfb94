#include <torch/extension.h>

namespace dfdc_fast {
namespace {

at::Tensor build_check_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "build_check_cpu: expected a CPU tensor, got ", x.device());
  return x + 1;
}

}  // namespace

TORCH_LIBRARY_IMPL(dfdc_fast, CPU, m) {
  m.impl("build_check", &build_check_cpu);
}

}  // namespace dfdc_fast
