"""Progress that tells the truth: the engine reports each video's stage (so a bar moves within
the first, slowest video), extraction shows faces made and videos written apart, probe has a
bar. Tiny synthetic videos: seconds."""
import json
import os

import pytest
import tqdm
import tqdm.auto

from dfdc_fast import extension, probe
from dfdc_fast.engine import Engine, FacesRequest, VideoTask
from dfdc_fast.io import First
from videos import make_video

needs_ops = pytest.mark.skipif(not extension._has_ops(), reason="extension not built (run scripts/setup.sh)")


class Bars:
    """Stands in for tqdm: records what each bar was told, by its description."""

    def __init__(self):
        self.events = []
        bars = self

        class Bar:
            def __init__(self, *args, desc="", total=None, disable=False, **kwargs):
                self.desc, self.total, self.disable = (desc or "").strip(), total, disable
                bars.events.append((self.desc, "total", total))

            def update(self, n=1):
                bars.events.append((self.desc, "update", n))

            def set_postfix_str(self, text="", refresh=True):
                bars.events.append((self.desc, "postfix", text))

            def close(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        self.Bar = Bar

    def of(self, desc, kind):
        return [v for d, k, v in self.events if d == desc and k == kind]


@needs_ops
@pytest.mark.parametrize("workers", [0, 1])
def test_the_engine_reports_each_stage_of_a_video(tmp_path, workers):
    path = make_video(str(tmp_path / "v.mp4"), frames=20)
    seen = []
    with Engine(FacesRequest(frames=First(20), clips=None, crops=None), "cpu", workers=workers, decoder="pyav") as e:
        e.on_stage = lambda key, stage: seen.append((key, stage))
        results = list(e.run([VideoTask("a", path), VideoTask("b", path)]))
    assert [r.key for r in results] == ["a", "b"]
    assert seen == [("a", "decode"), ("a", "detect"), ("a", "cut"), ("b", "decode"), ("b", "detect"), ("b", "cut")]


@needs_ops
def test_extract_shows_the_stage_within_a_video_and_written_apart_from_faces(tmp_path, monkeypatch):
    from dfdc_fast import extract

    bars = Bars()
    monkeypatch.setattr(tqdm.auto, "tqdm", bars.Bar)
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_video(str(src / name), frames=20)
    extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(tmp_path / "out"), device="cpu",
                                                 workers=0, encoders=0, contact_sheet=0, progress=True))
    assert bars.of("faces", "postfix")[:3] == ["a.mp4: decode", "a.mp4: detect", "a.mp4: cut"]
    assert bars.of("faces", "update") == [1, 1] and bars.of("written", "update") == [1, 1]
    # the stage of the second video shows after the first video's faces are counted
    faces = [(k, v) for d, k, v in bars.events if d == "faces" and k != "total"]
    assert faces.index(("update", 1)) < faces.index(("postfix", "b.mp4: decode"))


def test_probe_has_a_bar_over_every_line_it_prints(tmp_path, capsys, monkeypatch):
    bars = Bars()
    monkeypatch.setattr(tqdm, "tqdm", bars.Bar)
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_video(str(tmp_path / name), frames=4)
    assert probe.main([str(tmp_path), str(tmp_path / "gone.mp4"), "--limit", "3"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and lines[0]["status"] == "missing"
    assert bars.of("probe", "total") == [3] and bars.of("probe", "update") == [1, 1, 1]


@pytest.mark.slow
def test_a_benchmark_stopped_by_sigterm_writes_what_it_measured(tmp_path):
    """As a time limit stops it: the JSON is there, marked incomplete, with the runs done so far."""
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, os.path.join(root, "benchmarks", "track.py"), "--cases", "medics",
                             "--repeats", "100000", "--no-tracker", "--out-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # the first case has begun, and its runs take "forever"
        assert "masks of 30x135x240" in first, proc.stderr.read()[-2000:]
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    [path] = tmp_path.glob("track-*.json")
    data = json.loads(path.read_text())
    assert data["complete"] is False and data["stopped"] == "SIGTERM"
    assert data["results"]["medics/faces"]["shape"] == [1, 30, 135, 240]
