import torch

from dfdc_fast.bench.counting import OpCounter, no_syncs


def test_counts_kernels_and_syncs():
    x = torch.arange(10.0)
    with OpCounter() as c:
        y = x * 2 + 1            # 2 kernels
        v = y.view(2, 5)         # a view: free
        _ = v.sum()              # 1 kernel
    assert c.kernels == 3 and c.syncs == 0, c.ops

    with OpCounter() as c:
        _ = x[x > 3]             # compare (kernel) + boolean-mask index (sync)
        _ = float(x.sum())       # .item(): sync
        _ = x.nonzero()          # sync
        _ = x.tolist()           # host read: sync
        _ = bool(x.any())        # sync
    assert c.syncs == 5, c.sync_ops
    assert c.sync_ops["Tensor.tolist"] == 1 and c.sync_ops["nonzero"] >= 1


def test_integer_indexing_and_padding_are_sync_free():
    x = torch.rand(4, 8)
    idx = torch.tensor([0, 2])
    with OpCounter() as c:
        _ = x[idx]
        _ = torch.where(x > 0.5, x, torch.zeros_like(x))
        _ = x.topk(3, dim=1)
        _ = torch.repeat_interleave(torch.arange(3), torch.tensor([1, 2, 1]), output_size=4)
    assert c.syncs == 0, c.sync_ops
    assert c.host_to_device == 1  # the torch.tensor(...) made from a host list inside the block


def test_patches_are_restored():
    original = torch.Tensor.tolist
    with OpCounter():
        assert torch.Tensor.tolist is not original
    assert torch.Tensor.tolist is original
    assert torch.ones(2).tolist() == [1.0, 1.0]


def test_no_syncs_is_a_noop_on_cpu():
    with no_syncs("cpu"):
        assert int(torch.ones(1)) == 1
