"""GPU decoders against PyAV: same frame count, frames within PSNR >= 40 dB, frames on the GPU."""
import importlib.util
import os

import pytest

from dfdc_fast.io import Every, First, VideoDecodeError, open_reader, read_video, read_videos
from videos import make_video, psnr

pytestmark = pytest.mark.cuda
HAS_DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
DECODERS = ["nvdec", pytest.param("dali", marks=pytest.mark.skipif(not HAS_DALI, reason="DALI not installed"))]
CLIPS = ["ccfoszqabv.mp4", "afoovlsmtx.mp4", "adwbthsgqb.mp4"]  # landscape, portrait, 299 frames


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", CLIPS)
def test_gpu_decoder_matches_pyav(samples_dir, decoder, name):
    path = os.path.join(samples_dir, name)
    ref = read_video(path, Every(25), decoder="pyav")
    out = read_video(path, Every(25), device="cuda", decoder=decoder)
    assert out.frames.is_cuda and out.decoder == decoder
    assert out.info.num_frames == ref.info.num_frames
    assert out.indices.tolist() == ref.indices.tolist()
    assert out.frames.shape == ref.frames.shape
    assert psnr(out.frames.cpu().numpy(), ref.frames.numpy()) >= 40


def test_nvdec_reuses_one_decoder_across_videos(samples_dir, tmp_path):
    with open_reader("nvdec", "cuda") as reader:
        a = reader.read(os.path.join(samples_dir, CLIPS[0]), First(5))
        session = reader._decoder
        b = reader.read(os.path.join(samples_dir, CLIPS[1]), First(5))
        assert reader._decoder is session
    assert a.frames.shape == (5, 1080, 1920, 3) and b.frames.shape == (5, 1920, 1080, 3)


def test_nvdec_concurrent_sessions_give_the_same_frames(samples_dir):
    paths = [os.path.join(samples_dir, n) for n in CLIPS] * 2
    one = [v.frames.sum().item() for _, v in read_videos(paths, Every(50), device="cuda", decoder="nvdec", workers=1)]
    many = [v.frames.sum().item() for _, v in read_videos(paths, Every(50), device="cuda", decoder="nvdec", workers=4)]
    assert one == many


def test_nvdec_bad_input(tmp_path):
    empty = tmp_path / "e.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError):
        read_video(str(empty), device="cuda", decoder="nvdec")


def test_auto_picks_a_gpu_decoder_on_cuda(tmp_path):
    v = read_video(make_video(str(tmp_path / "a.mp4"), frames=4), device="cuda")
    assert v.decoder in ("nvdec", "dali") and v.frames.is_cuda
