"""Detection over whole videos: decode the sampled frames, detect several videos per batch."""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Union

import torch

from dfdc_fast.detect.mtcnn import MTCNN
from dfdc_fast.detect.types import Detections
from dfdc_fast.io import Video, VideoDecodeError, read_videos
from dfdc_fast.io.selectors import SelectorLike

Result = Union[tuple[Video, Detections], VideoDecodeError]


def detect_videos(
    paths: Iterable[Union[str, os.PathLike]],
    detector: MTCNN,
    frames: SelectorLike = None,
    *,
    decoder: str = "auto",
    workers: int = 1,
    videos_per_batch: int = 8,
) -> Iterator[tuple[str, Result]]:
    """Yield ``(path, (video, detections))`` or ``(path, VideoDecodeError)`` in input order.

    Frames are decoded on the detector's device by ``workers`` readers; the sampled frames
    of up to ``videos_per_batch`` videos go through the detector together.
    """
    if videos_per_batch < 1:
        raise ValueError(f"videos_per_batch must be >= 1, got {videos_per_batch}")
    pending: list[tuple[str, Union[Video, VideoDecodeError]]] = []

    def flush():
        videos = [(p, v) for p, v in pending if isinstance(v, Video) and len(v)]
        found = detector.detect_many([v.frames for _, v in videos], [v.indices for _, v in videos]) if videos else []
        by_path = {id(v): d for (_, v), d in zip(videos, found)}
        for path, v in pending:
            if isinstance(v, VideoDecodeError):
                yield path, v
            elif id(v) in by_path:
                yield path, (v, by_path[id(v)])
            else:  # no frame selected: nothing to detect on
                empty = Detections(frame_indices=torch.zeros(0, dtype=torch.int64),
                                   boxes=torch.zeros((0, 0, 4), device=detector.device),
                                   scores=torch.zeros((0, 0), device=detector.device),
                                   counts=torch.zeros(0, dtype=torch.int64, device=detector.device),
                                   frame_size=(v.info.height, v.info.width),
                                   landmarks=torch.zeros((0, 0, 5, 2), device=detector.device))
                yield path, (v, empty)
        pending.clear()

    for path, video in read_videos(paths, frames, device=detector.device, decoder=decoder, workers=workers):
        pending.append((path, video))
        if len(pending) >= videos_per_batch:
            yield from flush()
    yield from flush()
