"""``python -m dfdc_fast.evaluate``: DFDC log loss, AUC/AP/EER, per part, a picture, refusals."""
import json
import math
import os
import random

import pytest

from dfdc_fast.evaluate.__main__ import main
from dfdc_fast.metrics import average_precision, equal_error_rate, roc_auc

SAMPLES = "/work/shared/data/dfdc_samples"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "dfdc_fast", "assets", "demo")


def _labels_dir():
    return SAMPLES if os.path.isfile(os.path.join(SAMPLES, "metadata.json")) else DEMO


def _write(path, rows):
    with open(path, "w") as f:
        f.write("filename,label\n" + "".join(f"{n},{p}\n" for n, p in rows))
    return str(path)


def test_ranking_figures_match_their_definitions():
    rng = random.Random(0)
    ys = [rng.random() < 0.6 for _ in range(60)]
    ps = [round(min(max(rng.gauss(0.65 if y else 0.4, 0.2), 0), 1), 2) for y in ys]  # rounded: ties
    fakes = [p for y, p in zip(ys, ps) if y]
    reals = [p for y, p in zip(ys, ps) if not y]
    mann_whitney = sum((f > r) + 0.5 * (f == r) for f in fakes for r in reals) / (len(fakes) * len(reals))
    assert roc_auc(ys, ps) == pytest.approx(mann_whitney, abs=1e-12)
    # AP = mean over thresholds t (distinct scores, high to low) of precision(t) x recall step
    ap, last_recall = 0.0, 0.0
    for t in sorted(set(ps), reverse=True):
        called = [y for y, p in zip(ys, ps) if p >= t]
        recall = sum(called) / len(fakes)
        ap += (recall - last_recall) * sum(called) / len(called)
        last_recall = recall
    assert average_precision(ys, ps) == pytest.approx(ap, abs=1e-12)
    assert equal_error_rate([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert equal_error_rate([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert equal_error_rate([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.2]) == pytest.approx(0.5)


def test_evaluate_on_the_sample_clips_labels(tmp_path, capsys):
    folder = _labels_dir()
    meta = json.load(open(os.path.join(folder, "metadata.json")))
    rows = [(n, 0.8 if e["label"] == "FAKE" else 0.3) for n, e in meta.items()]
    sub = _write(tmp_path / "submission.csv", rows + [("unlabelled.mp4", 0.5)])
    assert main([sub, folder]) == 0
    report = json.load(open(tmp_path / "evaluation.json"))
    fakes = sum(e["label"] == "FAKE" for e in meta.values())
    reals = len(meta) - fakes
    plain = (fakes * -math.log(0.8) + reals * -math.log(0.7)) / len(meta)
    assert report["videos"] == len(meta) and report["fake"] == fakes and report["unlabelled_rows"] == 1
    assert report["log_loss"] == pytest.approx(plain, rel=1e-12)
    assert report["balanced_log_loss"] == pytest.approx((-math.log(0.8) - math.log(0.7)) / 2, rel=1e-12)
    assert report["auc"] == 1.0 and report["ap"] == 1.0 and report["eer"] == 0.0
    assert report["accuracy_at_0.5"] == 1.0
    assert os.path.getsize(tmp_path / "evaluation.png") > 5000
    assert json.loads(capsys.readouterr().out)["log_loss"] == pytest.approx(plain)


def test_a_submission_missing_videos_or_with_bad_rows_is_refused(tmp_path, capsys):
    folder = _labels_dir()
    names = list(json.load(open(os.path.join(folder, "metadata.json"))))
    cases = {
        "missing": [(n, 0.5) for n in names[1:]],
        "not a number": [(n, 0.5) for n in names[1:]] + [(names[0], "abc")],
        "out of range": [(n, 0.5) for n in names[1:]] + [(names[0], 1.5)],
        "duplicates": [(n, 0.5) for n in names] + [(names[0], 0.4)],
    }
    for case, rows in cases.items():
        sub = _write(tmp_path / f"{case}.csv", rows)
        assert main([sub, folder, "-o", str(tmp_path / case)]) == 2, case
        err = capsys.readouterr().err
        assert "refused" in err and names[0] in err, (case, err)
        assert not os.path.exists(tmp_path / case / "evaluation.json")


def test_per_part_figures_and_csv_labels(tmp_path):
    parts = {"dfdc_train_part_0": {"a.mp4": "FAKE", "b.mp4": "REAL", "c.mp4": "FAKE"},
             "dfdc_train_part_1": {"d.mp4": "REAL", "e.mp4": "FAKE"}}
    for part, labels in parts.items():
        (tmp_path / part).mkdir()
        json.dump({n: {"label": lab, "split": "train"} for n, lab in labels.items()},
                  open(tmp_path / part / "metadata.json", "w"))
    scores = {"a.mp4": 0.9, "b.mp4": 0.6, "c.mp4": 0.4, "d.mp4": 0.2, "e.mp4": 0.7}
    sub = _write(tmp_path / "submission.csv", scores.items())
    assert main([sub, str(tmp_path), "-o", str(tmp_path / "eval")]) == 0
    report = json.load(open(tmp_path / "eval" / "evaluation.json"))
    assert sorted(report["parts"]) == ["dfdc_train_part_0", "dfdc_train_part_1"]
    p0 = report["parts"]["dfdc_train_part_0"]
    assert p0["videos"] == 3 and p0["auc"] == 0.5
    assert p0["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.4)) / 3)
    assert report["parts"]["dfdc_train_part_1"]["auc"] == 1.0
    csv_labels = tmp_path / "labels.csv"
    csv_labels.write_text("filename,label,part\n" + "".join(
        f"{n},{1 if lab == 'FAKE' else 0},{part}\n" for part, ls in parts.items() for n, lab in ls.items()))
    assert main([sub, str(csv_labels), "-o", str(tmp_path / "eval_csv")]) == 0
    again = json.load(open(tmp_path / "eval_csv" / "evaluation.json"))
    assert again["log_loss"] == report["log_loss"] and again["parts"] == report["parts"]
