"""The NVDEC and DALI training loaders after their decoders, on fake CUDA (bench/fake_cuda.py).

The decoders are stood in (no GPU here): PyNvVideoCodec by a session whose frames are fake
CUDA NV12 surfaces in NVDEC's layout (a pitch wider than the frame, luma rows padded to 16,
the interleaved chroma plane below them), DALI by a pipeline whose video decoder returns
fake CUDA ``(F, H, W, 3)`` clips. Everything else is the loaders' own code: the NV12-to-RGB
conversion into ring slots, the inter-process events guarding them, the decoder processes'
protocol (run in this process, in order), batch assembly, labels, DALI's copy into torch.

The loaders are imported from ``dfdc_fast.train.loaders`` (a module now, a package after the
split into loaders/{pyav,nvdec,dali}.py; both export these names).
"""
import contextlib
import queue
import sys
import types as pytypes

import numpy as np
import pytest
import torch

from dfdc_fast.bench.fake_cuda import fake_cuda
from dfdc_fast.io import nvdec as nvdec_io
from dfdc_fast.io import dali as dali_io
from dfdc_fast.train.loaders import DaliLoader, EpochPlan, Item, NvdecLoader, NvdecWindowDecoder

SIZE = 256  # the extraction's face clips


def _clip(path, frames=40, size=SIZE):
    from dfdc_fast.crops.encode import write_mp4

    rng = np.random.default_rng(0)
    write_mp4(str(path), rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8), fps=30, keyint=16)
    return str(path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return [_clip(folder / f"c{i}.mp4") for i in range(3)]


def _plan(clips, t=8, batch=2) -> EpochPlan:
    items = [Item(clips[i % len(clips)], float(i % 2), tuple(range(i, i + t))) for i in range(5)]
    return EpochPlan(items, batch, drop_last=False)  # 5 items in batches of 2: the last one is partial


# ---- NVDEC ---------------------------------------------------------------------------------


class _Surface:
    """A decoded frame as PyNvVideoCodec hands it over (read through DLPack)."""

    def __init__(self, tensor):
        self.tensor = tensor


class _NvdecSession:
    """PyNvVideoCodec.SimpleDecoder's calls the loader makes; frames are fake NV12 surfaces."""

    def __init__(self, path, gpu_id=0, cuda_stream=0, use_device_memory=True, output_color_type=None,
                 decoder_cache_size=4):
        assert use_device_memory and output_color_type == "native" and gpu_id == 0
        self.opened = [path]

    def reconfigure_decoder(self, path):
        self.opened.append(path)

    def get_batch_frames_by_index(self, indices):
        h, w = SIZE, SIZE
        pitch, luma_rows = -(-w // 512) * 512 + 512, -(-h // 16) * 16
        return [_Surface(torch.empty(luma_rows * 3 // 2, pitch, 1, dtype=torch.uint8, device="cuda")) for _ in indices]


@contextlib.contextmanager
def _nvdec_stand_in(monkeypatch):
    nvc = pytypes.SimpleNamespace(SimpleDecoder=_NvdecSession,
                                  OutputColorType=pytypes.SimpleNamespace(NATIVE="native", RGB="rgb"))
    monkeypatch.setattr(nvdec_io, "import_pynvvideocodec", lambda: nvc)
    real = torch.from_dlpack
    monkeypatch.setattr(torch, "from_dlpack", lambda x: x.tensor if isinstance(x, _Surface) else real(x))
    yield


class _InlineContext:
    """``torch.multiprocessing.get_context("spawn")`` whose processes run in this one: a worker
    runs its task loop when the loader waits for results, until the task queue is empty."""

    class _Done(Exception):
        pass

    def __init__(self):
        self.procs, self.in_worker = [], False

    def Queue(self):  # noqa: N802 - the multiprocessing API
        return _InlineQueue(self)

    def Process(self, target, args, daemon=True, name=""):  # noqa: N802
        proc = pytypes.SimpleNamespace(target=target, args=args, name=name, exitcode=None,
                                       start=lambda: None, join=lambda timeout=None: None,
                                       is_alive=lambda: True, terminate=lambda: None)
        self.procs.append(proc)
        return proc

    def run_workers(self):
        threads, self.in_worker = torch.get_num_threads(), True
        try:
            for proc in self.procs:
                try:
                    proc.target(*proc.args)
                except self._Done:
                    pass
        finally:
            self.in_worker = False
            torch.set_num_threads(threads)  # a worker sets its own process to one thread


class _InlineQueue:
    def __init__(self, ctx):
        self.ctx, self.items = ctx, queue.SimpleQueue()

    def put(self, item):
        self.items.put(item)

    def get(self, timeout=None):
        try:
            return self.items.get_nowait()
        except queue.Empty:
            if self.ctx.in_worker:  # a worker found no task: back to the loader
                raise _InlineContext._Done from None
            self.ctx.run_workers()  # the loader waits for results: let the workers run
            return self.items.get_nowait()


def test_nvdec_ring_on_the_device(clips, monkeypatch):
    plan = _plan(clips)
    ctx = _InlineContext()
    monkeypatch.setattr(torch.multiprocessing, "get_context", lambda method=None: ctx)
    with _nvdec_stand_in(monkeypatch), fake_cuda() as fc:
        loader = NvdecLoader(torch.device("cuda"), workers=2, prefetch=1)
        batches = [tuple(b) for b in loader.iterate(plan)]
        ring_shape = tuple(loader._ring.shape) if loader._ring is not None else None
        loader.close()
    assert [tuple(f.shape) for f, _ in batches] == [(2, 8, SIZE, SIZE, 3)] * 2 + [(1, 8, SIZE, SIZE, 3)]
    assert all(f.device.type == "cuda" and f.dtype == torch.uint8 for f, _ in batches)
    assert [tuple(y.shape) for _, y in batches] == [(2,), (2,), (1,)]
    assert all(y.device.type == "cuda" and y.dtype == torch.float32 for _, y in batches)
    assert ring_shape in (None, (2, 2, 8, SIZE, SIZE, 3))
    assert loader.stats.delivered == 5 * 8 and loader.stats.expected_decoded > 0
    assert fc.host_reads == 0 and set(fc.counter.sync_ops) <= {"Stream.synchronize"}, fc.counter.sync_ops
    # each worker waits for its own decode before reporting a slot done; the trainer never waits
    assert fc.counter.sync_ops["Stream.synchronize"] == len(plan.items)


def test_nvdec_window_decoder_converts_surfaces_into_the_slot(clips, monkeypatch):
    """One window with a repeated frame (a short clip's padding): decoded once, copied."""
    with _nvdec_stand_in(monkeypatch), fake_cuda() as fc:
        decoder = NvdecWindowDecoder("cuda")
        out = torch.empty(6, SIZE, SIZE, 3, dtype=torch.uint8, device="cuda")
        decoder.decode_into(clips[0], [3, 4, 5, 5, 5, 5], out, wait_event=torch.cuda.Event(interprocess=True))
        with pytest.raises(RuntimeError):  # a host slot for a device decoder
            decoder.decode_into(clips[0], [0, 1], torch.empty(2, SIZE, SIZE, 3, dtype=torch.uint8))
    assert fc.counter.ops["copy_"] >= 3  # the repeated rows are device copies


# ---- DALI ----------------------------------------------------------------------------------


class _Node:
    def __init__(self, kind, **kw):
        self.kind, self.kw = kind, kw


class _TensorList:
    """What ``pipe.run()`` returns for the video decoder's output: a batch of (F, H, W, 3) clips."""

    def __init__(self, clips):
        self.clips = clips

    def __len__(self):
        return len(self.clips)

    def is_dense_tensor(self):
        return len({tuple(c.shape) for c in self.clips}) == 1

    def as_tensor(self):
        stacked = torch.stack(self.clips)
        return pytypes.SimpleNamespace(tensor=stacked, shape=lambda: list(stacked.shape))


class _DaliStandIn:
    """nvidia.dali's pipeline_def, fn and types as the loader uses them; the decoder's output is fake CUDA."""

    def __init__(self, size):
        self.size, self.built = size, []
        self.fn = pytypes.SimpleNamespace(external_source=self._external_source,
                                          decoders=pytypes.SimpleNamespace(video=self._video))
        self.types = pytypes.SimpleNamespace(UINT8="uint8", INT32="int32")

    def _external_source(self, source, num_outputs, batch, dtype, ndim, device):
        assert num_outputs == 2 and batch and device == "cpu"
        return _Node("encoded", source=source), _Node("frames", source=source)

    def _video(self, encoded, frames, device):
        return _Node("video", source=encoded.kw["source"], device=device)

    def pipeline_def(self, **options):
        def wrap(graph):
            stand_in = self

            class Pipe:
                def build(self):
                    self.out = graph()
                    stand_in.built.append((options, self.out.kw["device"]))

                def run(self):
                    encoded, windows = next(self.out.kw["source"])
                    assert all(e.dtype == np.uint8 and e.ndim == 1 for e in encoded)
                    return (_TensorList([torch.empty(len(w), stand_in.size, stand_in.size, 3, dtype=torch.uint8,
                                                     device="cuda") for w in windows]),)
            return lambda: Pipe()
        return wrap


def _feed_ndarray(dense, arr, cuda_stream=None):
    """nvidia.dali.plugin.pytorch.feed_ndarray: a copy into ``arr`` (same shape, dtype, device) on the stream."""
    assert cuda_stream is not None and arr.device.type == "cuda", (arr.device, cuda_stream)
    assert list(arr.shape) == dense.shape() and arr.dtype == dense.tensor.dtype
    arr.copy_(dense.tensor)
    return arr


def test_dali_loader_on_the_device(clips, monkeypatch):
    plan = _plan(clips)
    dali = _DaliStandIn(SIZE)
    monkeypatch.setattr(dali_io, "import_dali", lambda: (dali, dali.fn, dali.types))
    plugin = pytypes.ModuleType("nvidia.dali.plugin.pytorch")
    plugin.feed_ndarray = _feed_ndarray
    monkeypatch.setitem(sys.modules, "nvidia.dali.plugin.pytorch", plugin)
    with fake_cuda() as fc:
        loader = DaliLoader(torch.device("cuda"), workers=2, prefetch=2)
        batches = [tuple(b) for b in loader.iterate(plan)]
    (options, device), = dali.built
    assert device == "mixed" and options["device_id"] == 0 and options["batch_size"] == 2
    assert [tuple(f.shape) for f, _ in batches] == [(2, 8, SIZE, SIZE, 3)] * 2 + [(1, 8, SIZE, SIZE, 3)]
    assert all(f.device.type == "cuda" and y.device.type == "cuda" and y.shape == (len(f),) for f, y in batches)
    assert fc.host_reads == 0 and fc.counter.syncs == 0, fc.counter.sync_ops
    assert loader.stats.delivered == 5 * 8
