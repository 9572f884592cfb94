import pytest
import torch

from dfdc_fast import extension
from dfdc_fast.ops import build_check

pytestmark = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float32])
def test_build_check_cpu(dtype):
    x = torch.arange(10, dtype=dtype).reshape(2, 5)
    y = build_check(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y, x + 1)
    assert torch.ops.dfdc_fast.build_check(x).equal(x + 1)


def test_build_check_fake_tensor_shape():
    y = build_check(torch.empty(3, 4, device="meta"))
    assert y.shape == (3, 4) and y.device.type == "meta"


def test_ci_builds_the_cuda_kernels():
    """CI sets FORCE_CUDA=1, so the .cu files must have compiled there."""
    import os

    if os.environ.get("FORCE_CUDA") == "1":
        assert extension.cuda_version() >= 13000
    else:
        assert isinstance(extension.cuda_version(), int)


@pytest.mark.cuda
def test_build_check_cuda_equals_cpu():
    x = torch.randn(1000)
    assert torch.equal(build_check(x.cuda()).cpu(), build_check(x))
