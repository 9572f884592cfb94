"""The fake-CUDA layer itself: what it lets through and what it stops (bench/fake_cuda.py)."""
import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorDeviceMismatchError

from dfdc_fast.bench.fake_cuda import HostReadError, ReplayError, fake_cuda, record_fetches
from dfdc_fast.runtime import fetch


def _stage(x: torch.Tensor) -> tuple[int, torch.Tensor]:
    """A device stage with one deliberate read: how many values exceed the mean."""
    mean = x.mean()
    (n,) = fetch((x > mean).sum())
    return int(n), torch.zeros(int(n), device=x.device)


def test_cuda_tensors_are_fake_and_cpu_tensors_real():
    with fake_cuda() as fc:
        x = torch.zeros(2, 3, device="cuda")
        host = torch.arange(4)
        assert isinstance(x, FakeTensor) and x.device.type == "cuda"
        assert not isinstance(host, FakeTensor) and host.tolist() == [0, 1, 2, 3]
        assert (x + 1).device.type == "cuda"
        assert torch.cuda.is_available()
    assert fc.counter.kernels == 2 and fc.counter.ops["zeros"] == 1, fc.counter.ops  # zeros + add, not arange


def test_tensor_and_module_helpers_keep_layout():
    frames = torch.zeros(2, 3, 8, 8).to(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(3, 4, 3)
    with fake_cuda() as fc:
        x = fc.tensor(frames)
        net = fc.module(conv)
        y = net(x)
        a = fc.tensor(np.zeros((5, 7), np.uint8))
    assert x.device.type == "cuda" and x.stride() == frames.stride()
    assert net.weight.device.type == "cuda" and y.shape == (2, 4, 6, 6)
    assert a.dtype == torch.uint8 and a.shape == (5, 7)


def test_a_host_tensor_meeting_a_device_one_fails():
    with fake_cuda():
        x = torch.zeros(4, device="cuda")
        with pytest.raises(FakeTensorDeviceMismatchError):
            _ = x + torch.ones(4)
        _ = x + torch.tensor(2.0)  # a 0-dim CPU scalar is fine on a GPU too


@pytest.mark.parametrize("read", [
    lambda x: x.sum().item(), lambda x: x.cpu(), lambda x: x.tolist(), lambda x: x.to("cpu"),
    lambda x: x.nonzero(), lambda x: x[x > 0], lambda x: bool(x.any()), lambda x: x.unique(),
    lambda x: x.numpy(), lambda x: torch.empty(4).copy_(x),
], ids=["item", "cpu", "tolist", "to_cpu", "nonzero", "bool_index", "bool", "unique", "numpy", "copy_pageable"])
def test_unbudgeted_host_reads_fail(read):
    with fake_cuda():
        x = torch.zeros(4, device="cuda")
        with pytest.raises(HostReadError):
            read(x)


def test_a_copy_into_pinned_memory_is_the_planned_bulk_read():
    with fake_cuda() as fc:
        x = torch.zeros(6, dtype=torch.uint8, device="cuda")
        host = torch.empty(6, dtype=torch.uint8, pin_memory=True)
        host.copy_(x, non_blocking=True)
        torch.cuda.current_stream(x.device).synchronize()
        also = torch.ones(3).pin_memory()
        assert also.is_pinned() and host.is_pinned() and not torch.ones(2).is_pinned()
    assert fc.bulk_reads == 1 and host.tolist() == [0] * 6
    assert fc.counter.sync_ops["Stream.synchronize"] == 1


def test_fetch_replays_a_cpu_run_and_counts():
    x = torch.arange(10.0)
    with record_fetches() as reads:
        n_cpu, _ = _stage(x)
    assert n_cpu == 5 and len(reads) == 1
    with fake_cuda(replay=reads) as fc:
        n, out = _stage(fc.tensor(x))
    assert n == 5 and out.shape == (5,) and out.device.type == "cuda"
    assert fc.host_reads == 1 and fc.counter.syncs == 1 and fc.replay_left == 0


def test_fetch_without_or_beyond_the_recording_fails():
    x = torch.arange(10.0)
    with fake_cuda(replay=None):
        with pytest.raises(ReplayError, match="replay=None"):
            _stage(torch.zeros(10, device="cuda"))
    with fake_cuda(replay=[]):
        with pytest.raises(ReplayError, match="recorded 0"):
            _stage(torch.zeros(10, device="cuda"))
    with record_fetches() as reads:
        fetch(x)
    with fake_cuda(replay=reads):
        with pytest.raises(ReplayError, match="int64"):
            fetch(torch.zeros(10, dtype=torch.int64, device="cuda"))  # another dtype than recorded
    with fake_cuda(replay=reads):
        with pytest.raises(ReplayError, match=r"\(11,\)"):
            fetch(torch.zeros(11, device="cuda"))


def test_fetch_of_tensors_on_two_devices_fails():
    with record_fetches() as reads:
        fetch(torch.zeros(2), torch.zeros(2))
    with fake_cuda(replay=reads):
        with pytest.raises(FakeTensorDeviceMismatchError):
            fetch(torch.zeros(2, device="cuda"), torch.zeros(2))


def test_cuda_runtime_stand_ins_and_restore():
    swap = torch.__future__.get_swap_module_params_on_conversion()
    with fake_cuda() as fc:
        stream = torch.cuda.Stream(torch.device("cuda", 0))
        with torch.cuda.device(0), torch.cuda.stream(stream):
            x = torch.zeros(3, device="cuda")
        torch.cuda.current_stream().wait_stream(stream)
        x.record_stream(torch.cuda.current_stream())
        event = torch.cuda.Event(interprocess=True)
        event.record(stream)
        torch.cuda.synchronize()
        with pytest.raises(RuntimeError, match="record_stream"):
            torch.zeros(2).record_stream(stream)
    assert fc.counter.sync_ops["cuda.synchronize"] == 1
    assert not torch.cuda.is_available()
    assert torch.__future__.get_swap_module_params_on_conversion() == swap
    from dfdc_fast import runtime
    assert runtime.FETCH_HOOKS == []


def test_counter_counts_only_device_ops_when_asked():
    from dfdc_fast.bench.counting import OpCounter

    x = torch.arange(4.0)
    with OpCounter(device_type="cuda") as c:
        _ = x * 2
        _ = x.tolist()
    assert c.kernels == 0 and c.syncs == 0


def test_fixture_gives_the_block(fake_gpu):
    with fake_gpu() as fc:
        torch.ones(2, device="cuda") * 3
    assert fc.counter.kernels == 2


def test_torch_load_reads_real_host_tensors(tmp_path):
    """A checkpoint is host data: loaded inside the block it is real (a fake mode alone makes it fake)."""
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    net = torch.nn.Linear(3, 1)
    with fake_cuda() as fc:
        state = torch.load(path, map_location="cpu", weights_only=True)
        on_device = torch.load(path, map_location="cuda", weights_only=True)
        fc.module(net).load_state_dict({"weight": torch.ones(1, 3), "bias": torch.zeros(1)}, strict=True)
    assert state["w"].tolist() == [0.0, 1.0, 2.0] and not isinstance(state["w"], FakeTensor)
    assert isinstance(on_device["w"], FakeTensor) and on_device["w"].device.type == "cuda"
    assert net.weight.device.type == "cuda"
