"""Detection plus tracking on real DFDC clips: read_video -> MTCNN -> track_faces.

The detector runs at the Medics' training-export settings (every 10th frame at 0.5x,
thresholds 0.6/0.7/0.7), so stray false positives do occur and the tracker must drop them.
"""
import json
import os

import pytest

from dfdc_fast import extension
from dfdc_fast.detect import MTCNN
from dfdc_fast.io import read_video
from dfdc_fast.io.selectors import Every
from dfdc_fast.track import track_faces

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)"),
]

# REAL clips: one person (two of them with stray second detections, one portrait), and
# the one REAL clip that shows two people.
ONE_PERSON = ["afoovlsmtx.mp4", "bpapbctoao.mp4", "ccfoszqabv.mp4", "eckvhdusax.mp4"]
TWO_PEOPLE = ["caifxvsozs.mp4"]


@pytest.fixture(scope="module")
def reference_detections(samples_dir):
    detector = MTCNN("cpu", "medics_export")
    meta = json.load(open(os.path.join(samples_dir, "metadata.json")))
    out = {}
    for name in ONE_PERSON + TWO_PEOPLE:
        assert meta[name]["label"] == "REAL"
        video = read_video(os.path.join(samples_dir, name), Every(10))
        dets = detector.detect(video.frames, video.indices)
        assert dets.frame_size == (video.info.height, video.info.width)
        out[name] = (dets, (video.info.num_frames, video.info.height, video.info.width))
    return out


@pytest.mark.parametrize("method", ["mask", "iou"])
def test_one_visible_person_is_one_long_track(reference_detections, method):
    for name in ONE_PERSON:
        dets, shape = reference_detections[name]
        tracks = track_faces(dets, shape, method=method, iou={"sigma_h": 0.9})
        assert [(t.start, t.stop) for t in tracks] == [(0, shape[0])], (name, tracks)
        x0, y0, x1, y1 = tracks[0].box.tolist()
        assert 0 <= x0 < x1 <= shape[2] and 0 <= y0 < y1 <= shape[1]
        assert tracks[0].score > 0.95


def test_extra_stray_detections_exist_and_are_dropped(reference_detections):
    """The clips above do contain extra boxes on some frames: the filter is exercised."""
    extra = sum(int((d.counts > 1).sum()) for name, (d, _) in reference_detections.items() if name in ONE_PERSON)
    assert extra >= 2


def test_two_people_are_two_tracks(reference_detections):
    dets, shape = reference_detections[TWO_PEOPLE[0]]
    tracks = track_faces(dets, shape)
    assert [(t.start, t.stop) for t in tracks] == [(0, shape[0])] * 2
    a, b = (t.box for t in tracks)
    assert a[2] <= b[0] or b[2] <= a[0]  # side by side, not overlapping
    chunked = track_faces(dets, shape, chunk_size=150)
    assert [(t.chunk, t.start, t.stop) for t in chunked] == [(0, 0, 150)] * 2 + [(1, 150, 300)] * 2
