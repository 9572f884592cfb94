"""DALI backend on the CPU (VP9 fixtures: DALI's CPU decoder has no H.264)."""
import pytest
import torch

from dfdc_fast.io import Every, VideoDecodeError, read_video
from videos import make_video, psnr

dali = pytest.importorskip("nvidia.dali", reason="DALI not installed")


@pytest.fixture(scope="module")
def vp9(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp("dali") / "clip.webm"), frames=30, codec="libvpx-vp9")


def test_dali_cpu_matches_pyav(vp9):
    for frames in (Every(3), [5, 1, 5]):
        d = read_video(vp9, frames, decoder="dali")
        p = read_video(vp9, frames, decoder="pyav")
        assert d.decoder == "dali" and d.frames.dtype == torch.uint8
        assert d.indices.tolist() == p.indices.tolist() and d.frames.shape == p.frames.shape
        # The two libraries convert YUV to RGB slightly differently; the difference
        # concentrates on the sharp chroma edge of the red bar (x < 8).
        assert psnr(d.frames[:, :, 16:].numpy(), p.frames[:, :, 16:].numpy()) >= 40
        assert psnr(d.frames.numpy(), p.frames.numpy()) >= 30


def test_dali_cpu_refuses_h264_with_a_clear_error(tmp_path):
    path = make_video(str(tmp_path / "h264.mp4"), frames=4)
    with pytest.raises(VideoDecodeError, match="only on the GPU"):
        read_video(path, decoder="dali")


def test_dali_sequence_reader_on_cpu(tmp_path):
    from dfdc_fast.io.dali import iterate_sequences, sequence_pipeline

    files = [make_video(str(tmp_path / f"{i}.webm"), frames=n, codec="libvpx-vp9") for i, n in enumerate((20, 12))]
    pipe = sequence_pipeline(files, [0, 1], sequence_length=8, batch_size=2, device="cpu", random_shuffle=False)
    seen = 0
    for clips, labels in iterate_sequences(pipe, "cpu"):
        assert clips.shape[1:] == (8, 48, 64, 3) and clips.dtype == torch.uint8
        assert set(labels.tolist()) <= {0, 1}
        seen += clips.shape[0]
    assert seen >= 2
