"""Inference never makes things worse: a failed run keeps the earlier submission, earlier
per-video records are not mixed in, names that need CSV quoting work, refused names get no
row, one writer per folder, and the time budget holds."""
import json
import os
import shutil
import time

import pytest
import torch

from dfdc_fast.files import FolderLock
from dfdc_fast.infer import InferConfig, read_submission, run_inference
from dfdc_fast.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ck") / "mc3_18.pth")
    torch.manual_seed(0)
    save_checkpoint(path, create_model("mc3_18", num_classes=1), model_name="mc3_18", model_kwargs={"num_classes": 1},
                    config={"input_size": 32})
    return path


def folder(tmp_path, samples_dir, names, rename=None):
    d = tmp_path / "in"
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(os.path.join(samples_dir, n), d / ((rename or {}).get(n, n)))
    return d


def run(inputs, out, checkpoints, **kw):
    kw = {"progress": False, **kw}
    return run_inference(InferConfig(inputs=[str(inputs)], checkpoints=checkpoints, out=str(out), frames=30,
                                     device="cpu", workers=0, **kw))


def test_a_failing_run_keeps_the_earlier_submission_and_records(tmp_path, samples_dir, checkpoint):
    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4", "acqfdwsrhi.mp4"])
    out = tmp_path / "out"
    run(src, out, [checkpoint])
    before = (out / "submission.csv").read_bytes()
    records = sorted(os.listdir(out / "videos"))
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a dfdc_fast checkpoint"):
        run(src, out, [str(bad)])
    assert (out / "submission.csv").read_bytes() == before
    assert sorted(os.listdir(out / "videos")) == records
    assert not (out / "submission.partial.csv").exists()


def test_a_rerun_replaces_the_records_of_the_earlier_run(tmp_path, samples_dir, checkpoint):
    out = tmp_path / "out"
    run(folder(tmp_path / "a", samples_dir, ["ccfoszqabv.mp4", "acqfdwsrhi.mp4"]), out, [checkpoint])
    run(folder(tmp_path / "b", samples_dir, ["afoovlsmtx.mp4"]), out, [checkpoint])
    assert sorted(os.listdir(out / "videos")) == ["afoovlsmtx.json"]
    assert set(read_submission(str(out / "submission.csv"))) == {"afoovlsmtx.mp4"}
    assert not (out / "videos.partial").exists() and not (out / "submission.partial.csv").exists()


def test_names_that_need_quoting_and_refused_names(tmp_path, samples_dir, checkpoint):
    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4", "acqfdwsrhi.mp4"],
                 rename={"acqfdwsrhi.mp4": 'odd, "name".mp4'})
    (src / "metadata.json").write_text(json.dumps({"ccfoszqabv.mp4": {"label": "REAL"},
                                                   'odd, "name".mp4': {"label": "FAKE"},
                                                   "../escape.mp4": {"label": "REAL"}}))
    summary = run(src, tmp_path / "out", [checkpoint])
    rows = read_submission(str(tmp_path / "out" / "submission.csv"))
    assert set(rows) == {"ccfoszqabv.mp4", 'odd, "name".mp4'}  # the refused name has no row
    assert summary["statuses"] == {"ok": 2} and summary["refused"][0]["name"] == "../escape.mp4"


def test_one_run_per_output_folder(tmp_path, samples_dir, checkpoint):
    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4"])
    (tmp_path / "out").mkdir()
    with FolderLock(str(tmp_path / "out"), "infer"):
        with pytest.raises(RuntimeError, match="in use by"):
            run(src, tmp_path / "out", [checkpoint])


@pytest.mark.slow
def test_the_time_budget_holds_with_every_row(tmp_path, samples_dir, checkpoint, monkeypatch):
    from dfdc_fast.infer.pipeline import FaceScorer

    real = FaceScorer.score

    def slow_score(self, faces, level):  # models of 2 s a video: 20 videos cannot fit, however fast the machine
        time.sleep(2.0 * len(faces))
        return real(self, faces, level)

    monkeypatch.setattr(FaceScorer, "score", slow_score)
    budget = 30.0
    t0 = time.perf_counter()
    summary = run_inference(InferConfig(inputs=[samples_dir], checkpoints=[checkpoint], out=str(tmp_path / "out"),
                                        device="cpu", progress=False, time_budget=budget))
    elapsed = time.perf_counter() - t0
    assert elapsed <= max(budget * 1.05, budget + 10), elapsed
    rows = read_submission(str(tmp_path / "out" / "submission.csv"))
    assert len(rows) == 20 and summary["videos"] == 20
    assert summary["statuses"].get("ok", 0) >= 1 and summary["statuses"].get("time_budget", 0) >= 1, summary["statuses"]


def test_infer_refuses_a_folder_another_job_made(tmp_path, samples_dir, checkpoint):
    from dfdc_fast import extract

    out = tmp_path / "faces"
    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4"])
    extract.run_extraction(extract.ExtractConfig(inputs=[str(src)], out=str(out), device="cpu", workers=0, encoders=0,
                                                 progress=False, contact_sheet=0, every=30))
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    summary = (out / "summary.json").read_bytes()
    with pytest.raises(RuntimeError, match="made by extract"):
        run(src, out, [checkpoint])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert (out / "summary.json").read_bytes() == summary


def test_a_nan_score_is_that_videos_error(tmp_path, samples_dir):
    path = str(tmp_path / "nan.pth")
    model = create_model("mc3_18", num_classes=1)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    save_checkpoint(path, model, model_name="mc3_18", model_kwargs={"num_classes": 1}, config={"input_size": 32})
    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4"])
    summary = run(src, tmp_path / "out", [path])
    assert summary["statuses"] == {"error": 1}
    assert read_submission(str(tmp_path / "out" / "submission.csv")) == {"ccfoszqabv.mp4": 0.5}


def test_a_run_that_read_nothing_keeps_the_earlier_submission(tmp_path, samples_dir, checkpoint, monkeypatch):
    from dfdc_fast.files import StorageError

    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4"])
    out = tmp_path / "out"
    run(src, out, [checkpoint])
    before = (out / "submission.csv").read_bytes()
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "metadata.json").write_text(json.dumps({"ccfoszqabv.mp4": {"label": "REAL"}}))  # listed, not on disk
    summary = run(gone, out, [checkpoint])
    assert summary["submission_kept"] and summary["statuses"] == {"missing": 1}
    assert (out / "submission.csv").read_bytes() == before and os.listdir(out / "videos") == ["ccfoszqabv.json"]
    monkeypatch.setenv("DFDC_FAST_FAULT", "enospc:1")  # the disk is full when the submission is written
    with pytest.raises(StorageError):
        run(src, out, [checkpoint])
    assert (out / "submission.csv").read_bytes() == before
    assert not [n for n in os.listdir(out) if n.startswith((".tmp", ".lock"))]


def _interrupt_second_group(monkeypatch):
    """FaceScorer.score raises KeyboardInterrupt (Ctrl-C) on its second call; returns the call log."""
    from dfdc_fast.infer.pipeline import FaceScorer

    calls = []
    real = FaceScorer.score

    def score(self, faces, level):
        calls.append([f.key for f in faces])
        if len(calls) == 2 and calls[0] != "resumed":
            raise KeyboardInterrupt
        return real(self, faces, level)

    monkeypatch.setattr(FaceScorer, "score", score)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("earlier_submission", [False, True], ids=["new folder", "complete submission there"])
def test_an_interrupted_run_leaves_no_complete_looking_submission_and_a_rerun_resumes(
        tmp_path, samples_dir, checkpoint, monkeypatch, earlier_submission):
    src = folder(tmp_path, samples_dir, ["ccfoszqabv.mp4", "acqfdwsrhi.mp4"])
    out = tmp_path / "out"
    before = None
    if earlier_submission:
        out.mkdir()
        (out / "submission.csv").write_text("filename,label\nccfoszqabv.mp4,0.25\nacqfdwsrhi.mp4,0.75\n")
        before = (out / "submission.csv").read_bytes()
    calls = _interrupt_second_group(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(src, out, [checkpoint], videos_per_batch=1)
    # alike in both cases: the partial file has the progress, submission.csv is untouched or absent
    assert ((out / "submission.csv").read_bytes() if (out / "submission.csv").exists() else None) == before
    partial = read_submission(str(out / "submission.partial.csv"))
    assert sorted(partial.values())[0] == 0.5 and len(partial) == 2
    (done,) = [n for n in os.listdir(out / "videos.partial") if n.endswith(".json")]
    first = json.load(open(out / "videos.partial" / done))
    calls.clear()
    calls.append("resumed")  # from here on the scorer runs normally
    summary = run(src, out, [checkpoint], videos_per_batch=1)
    assert summary["resumed"] == 1 and len(calls) == 2  # only the video not done was scored
    rows = read_submission(str(out / "submission.csv"))
    assert rows[first["filename"]] == pytest.approx(first["label"]) and summary["statuses"] == {"ok": 2}
    assert sorted(os.listdir(out / "videos")) == ["acqfdwsrhi.json", "ccfoszqabv.json"]
    assert not (out / "submission.partial.csv").exists() and not (out / "videos.partial").exists()


def test_records_of_other_settings_are_not_reused(tmp_path):
    from dfdc_fast.infer.pipeline import RESUME_FILE, VideoResult, resume_records

    d = tmp_path / "videos.partial"
    d.mkdir()
    (d / RESUME_FILE).write_text(json.dumps({"frames": 30}))
    r = VideoResult("a.mp4", "/x/a.mp4", output_id="a")
    (d / "a.json").write_text(json.dumps({"filename": "a.mp4", "path": "/x/a.mp4", "status": "ok", "label": 0.9,
                                          "level": "full"}))
    assert resume_records(str(d), {"frames": 20}, [r]) == 0 and not d.exists() and r.status == "pending"
    d.mkdir()
    (d / RESUME_FILE).write_text(json.dumps({"frames": 30}))
    (d / "a.json").write_text(json.dumps({"filename": "a.mp4", "path": "/x/a.mp4", "status": "ok", "label": 0.9,
                                          "level": "half_frames"}))
    assert resume_records(str(d), {"frames": 30}, [r]) == 0 and not (d / "a.json").exists()  # degraded: redone


def test_the_scored_bar_counts_videos_once_their_models_ran(tmp_path, samples_dir, checkpoint, monkeypatch):
    """Two bars: faces made, then videos scored; a single bar sat at 100 % while the models ran."""
    import tqdm

    from dfdc_fast.infer.pipeline import FaceScorer

    events = []

    class Bar:
        def __init__(self, *args, desc="", **kwargs):
            self.desc = desc.strip()

        def update(self, n=1):
            events.append((self.desc, n))

        def set_postfix_str(self, *args, **kwargs):
            pass

        def close(self):
            pass

    real = FaceScorer.score
    monkeypatch.setattr(tqdm, "tqdm", Bar)
    monkeypatch.setattr(FaceScorer, "score", lambda self, faces, level: events.append("models") or real(self, faces, level))
    run(folder(tmp_path, samples_dir, ["ccfoszqabv.mp4"]), tmp_path / "out", [checkpoint], progress=True)
    assert events == [("faces", 1), "models", ("scored", 1)]
