"""What the README promises of every job's command line: inputs and options in any order,
every refusal one line with exit code 2 before anything is written, defaults in --help."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from dfdc_fast import probe
from dfdc_fast.cli import DefaultsFormatter, add_common_arguments
from dfdc_fast.detect import __main__ as detect_cli
from dfdc_fast.extract import cli as extract_cli
from dfdc_fast.infer import __main__ as infer_cli
from dfdc_fast.train import __main__ as train_cli
from videos import make_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_GPU = "cuda" if not torch.cuda.is_available() else "cuda:99"  # a GPU this machine does not have
MAINS = {"extract": extract_cli.main, "infer": infer_cli.main, "probe": probe.main, "detect": detect_cli.main,
         "train": train_cli.main}


def call(job: str, argv: list, capsys) -> tuple[int, str]:
    """(exit code, stderr) of a job's main, argparse's exits included."""
    try:
        rc = MAINS[job]([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_refused(job, argv, capsys, out, *words):
    rc, err = call(job, argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (job, argv, err)
    assert len(lines) == 1 and "Traceback" not in err, (job, argv, err)
    for w in words:
        assert w in err, (job, argv, err)
    assert not os.path.exists(out), f"{job} {argv}: a refused run created {out}"


# --- any order -------------------------------------------------------------------------------

def _extract_args(argv):
    ap = extract_cli.build_parser()
    add_common_arguments(ap)
    return ap.parse_args(argv)


def test_extract_takes_inputs_and_options_in_any_order():
    orders = [["a", "b", "-o", "out", "--every", "5"], ["-o", "out", "a", "--every", "5", "b"],
              ["--every", "5", "-o", "out", "a", "b"], ["a", "-o", "out", "b", "--every", "5"]]
    seen = [(a.inputs, a.out, a.every) for a in map(_extract_args, orders)]
    assert seen == [(["a", "b"], "out", 5)] * len(orders)


def test_infer_takes_videos_checkpoints_and_options_in_any_order():
    orders = [["in", "a.pt", "b.pth", "-o", "out"], ["in", "-o", "out", "a.pt", "b.pth"],
              ["-o", "out", "a.pt", "in", "b.pth"], ["in", "-w", "a.pt", "b.pth", "-o", "out"],
              ["-w", "a.pt", "-o", "out", "in", "-w", "b.pth"], ["a.pt", "--frames", "20", "in", "-o", "out", "b.pth"]]
    for argv in orders:
        cfg = infer_cli.config_from_args(infer_cli.build_parser().parse_args(argv))
        assert (cfg.inputs, sorted(cfg.checkpoints), cfg.out) == (["in"], ["a.pt", "b.pth"], "out"), argv


def test_infer_weights_flag_refuses_a_folder_with_a_hint(tmp_path, capsys):
    assert_refused("infer", ["-w", "a.pt", tmp_path, "-o", tmp_path / "o"], capsys, tmp_path / "o", "-w", "folder")


def test_detect_and_train_take_options_between_their_inputs():
    ap = detect_cli.build_parser()
    a = ap.parse_args(["v1.mp4", "--every", "5", "v2.mp4", "--out", "d.jsonl"])
    assert (a.inputs, a.every, a.out) == (["v1.mp4", "v2.mp4"], 5, "d.jsonl")
    t = train_cli.parse_args(["lr=0.1", "-c", "smoke", "epochs=1", "--data", "d", "augment.hflip=0.3", "-o", "r"])
    assert (t.config, t.data, t.out, t.overrides) == ("smoke", "d", "r", ["lr=0.1", "epochs=1", "augment.hflip=0.3"])


def test_probe_runs_with_options_before_between_and_after_its_inputs(tmp_path, capsys):
    a = make_video(str(tmp_path / "a.mp4"), frames=5)
    b = make_video(str(tmp_path / "b.mp4"), frames=6)
    for argv in ([a, b, "--workers", "1"], ["--workers", "1", a, b], [a, "--layout", "plain", b, "--no-progress"]):
        assert probe.main(argv) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted((os.path.basename(r["path"]), r["frames"]) for r in lines) == [("a.mp4", 5), ("b.mp4", 6)]


# --- refusals: one line, rc 2, nothing written -----------------------------------------------

JOBS_WITH_DEVICE = {
    "extract": lambda d, o: [d, "-o", o, "--device", NO_GPU],
    "infer": lambda d, o: [d, "model.pth", "-o", o, "--device", NO_GPU],
    "probe": lambda d, o: ["--decode", d, "--device", NO_GPU],
    "detect": lambda d, o: [d, "--out", o, "--device", NO_GPU],
    "train": lambda d, o: ["-c", "smoke", "--data", d, "-o", o, "--device", NO_GPU],
}


@pytest.mark.parametrize("job", sorted(JOBS_WITH_DEVICE))
def test_a_gpu_this_machine_lacks_is_refused_in_one_line(job, tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused(job, JOBS_WITH_DEVICE[job](tmp_path, out), capsys, out, "--device", "GPU")


@pytest.mark.parametrize("job", ["extract", "infer", "probe", "detect"])
def test_a_backend_this_machine_cannot_run_is_refused_in_one_line(job, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {"extract": [tmp_path, "-o", out], "infer": [tmp_path, "m.pth", "-o", out], "probe": ["--decode", tmp_path],
            "detect": [tmp_path, "--out", out]}[job]
    device = [] if job == "probe" else ["--device", "cpu"]
    assert_refused(job, argv + ["--decoder", "nvdec"] + device, capsys, out, "--decoder nvdec")


@pytest.mark.parametrize("job", ["extract", "infer", "detect"])
def test_an_input_that_is_not_there_is_refused_in_one_line(job, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "no_such_folder"
    argv = {"extract": [missing, "-o", out], "infer": [missing, "m.pth", "-o", out], "detect": [missing, "--out", out]}[job]
    assert_refused(job, argv + ["--device", "cpu"], capsys, out, "does not exist")


def test_a_checkpoint_given_as_the_config_is_refused_in_one_line(tmp_path, capsys):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"\x80\x02binary")
    assert_refused("infer", [tmp_path, "-c", ckpt, "-o", tmp_path / "out"], capsys, tmp_path / "out", "-w FILE")


OUT_OF_RANGE = {
    "extract": [["--limit", "-1"], ["--every", "0"], ["--workers", "-1"], ["--threads", "0"], ["--encoders", "-1"],
                ["--video-timeout", "nan"], ["--video-timeout", "0"], ["--clip-crf", "52"], ["--crop-margin", "-0.1"],
                ["--pair-box-mult", "nan"], ["--chunk-size", "-1"], ["--contact-sheet", "-1"],
                ["--crops-per-video", "-1"], ["--max-pending", "0"], ["--min-clip-frames", "0"], ["--shard", "2/2"],
                ["--clip-size", "0"]],
    "infer": [["--limit", "-1"], ["--frames", "0"], ["--max-faces", "0"], ["--detect-every", "0"], ["--workers", "-1"],
              ["--time-budget", "0"], ["--time-budget", "-5"], ["--time-budget", "nan"], ["--videos-per-batch", "0"],
              ["--videos-per-batch", "-1"]],
    "probe": [["--limit", "-1"], ["--workers", "0"]],
    "detect": [["--limit", "-1"], ["--every", "0"], ["--workers", "0"], ["--videos-per-batch", "0"], ["--scale", "0"],
               ["--max-faces", "0"], ["--thresholds", "0.6", "0.7", "1.5"]],
}


@pytest.mark.parametrize("job,option", [(j, o) for j, opts in OUT_OF_RANGE.items() for o in opts],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_an_option_out_of_range_is_refused_before_anything_is_written(job, option, tmp_path, capsys):
    make_video(str(tmp_path / "v.mp4"), frames=5)
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"x")
    out = tmp_path / "out"
    argv = {"extract": [tmp_path, "-o", out, "--device", "cpu"], "infer": [tmp_path, ckpt, "-o", out, "--device", "cpu"],
            "probe": [tmp_path], "detect": [tmp_path, "--out", out, "--device", "cpu"]}[job]
    assert_refused(job, argv + option, capsys, out, option[0])


def test_ntech_inference_takes_frames_0_as_the_whole_video():
    cfg = infer_cli.config_from_args(infer_cli.build_parser().parse_args(["v", "m.pth", "--recipe", "ntech",
                                                                          "--frames", "0"]))
    assert cfg.frames == 0


# --- help, version, the package's own entry ---------------------------------------------------

PARSERS = {"extract": lambda: _with_common(extract_cli.build_parser()), "infer": infer_cli.build_parser,
           "probe": lambda: _with_common(probe.build_parser()), "detect": detect_cli.build_parser}


def _with_common(ap):
    add_common_arguments(ap)
    return ap


@pytest.mark.parametrize("job", sorted(PARSERS))
def test_help_shows_a_default_for_every_option(job):
    ap = PARSERS[job]()
    formatter = ap._get_formatter()
    assert isinstance(formatter, DefaultsFormatter)
    missing = []
    for action in ap._actions:
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        text = formatter._expand_help(action)
        if "default" not in text.lower():
            missing.append(action.option_strings[-1])
        assert "%(" not in text and "None" not in text.replace("none", ""), (action.option_strings, text)
    assert not missing, f"{job} --help shows no default for {missing}"
    text = ap.format_help()
    assert ":mod:" not in text and "``" not in text and "thin layer" not in text


def test_every_job_has_version_and_the_package_lists_the_jobs():
    r = subprocess.run([sys.executable, "-m", "dfdc_fast"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0
    for job in ("probe", "detect", "extract", "train", "infer"):
        assert f"  {job} " in r.stdout
    from dfdc_fast import __version__

    for job in ("probe", "infer"):
        v = subprocess.run([sys.executable, "-m", f"dfdc_fast.{job}", "--version"], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
        assert v.returncode == 0 and v.stdout.strip() == f"dfdc_fast {__version__}"


def test_extract_help_matches_the_two_core_default():
    text = _with_common(extract_cli.build_parser()).format_help()
    assert "one per core on a CPU of more than 2 cores" in " ".join(text.split())


@pytest.mark.slow
def test_the_readme_facepath_snippet_makes_clips_and_crops(tmp_path):
    """As its comment says: the first README block with FacePath, run on a demo clip, cuts both."""
    import test_readme

    (block,) = [b for _, b in test_readme.runnable("python") if "FacePath(" in b]
    code = test_readme.adapt(block, str(tmp_path))
    code += "\nprint(repr((faces.status, len(faces.tracks), len(faces.clips), len(faces.crops))))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                       env={**os.environ, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr[-2000:]
    status, tracks, clips, crops = eval(r.stdout.strip().splitlines()[-1])
    assert status == "ok" and tracks >= 1 and clips >= 1 and crops >= 1
