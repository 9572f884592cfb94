"""``report.png`` of an inference run: the scores it wrote and where the time went.

Four panels, drawn with matplotlib (Agg: no display needed):

* the histogram of the scores of the videos that were scored (status ``ok``);
* the videos per status, the 0.5 fallbacks (``no_face``, ``decode_error``, ``time_budget``,
  ...) marked as such;
* the run's stages (``summary.json``'s ``stage_seconds``: loading and compiling the models,
  starting the workers, waiting for faces, running the models);
* per video, decode / detect+track / cut / host copy / models seconds (the slowest videos
  when there are many).

Everything comes from ``summary.json`` and the per-video records in ``videos/``, so a
finished run's picture can be drawn again::

    from dfdc_fast.infer.report import report_from_folder
    report_from_folder("out")        # writes out/report.png
"""
from __future__ import annotations

import glob
import json
import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

#: Per-video timings drawn, in order: key in a record's ``timings`` -> legend label.
VIDEO_STAGES = {"decode_s": "decode", "detect_track_s": "detect + track", "cut_s": "cut faces",
                "host_copy_s": "copy to host", "models_s": "models (share of its group)"}
#: ``stage_seconds`` keys -> labels.
RUN_STAGES = {"load_models_s": "load models", "compile_s": "compile models", "engine_start_s": "start workers",
              "wait_for_faces_s": "wait for faces", "models_s": "run models"}
STATUS_COLOURS = {"ok": "tab:green", "no_face": "tab:orange", "decode_error": "tab:red", "error": "darkred",
                  "time_budget": "tab:purple", "missing": "tab:grey"}
MOST_VIDEOS = 30  # per-video bars drawn at most (the slowest)


def read_videos(out: str) -> list[dict]:
    """The per-video records (``videos/*.json``) of a finished run."""
    records = []
    for path in sorted(glob.glob(os.path.join(out, "videos", "**", "*.json"), recursive=True)):
        try:
            with open(path) as f:
                records.append(json.load(f))
        except (OSError, ValueError) as exc:
            log.warning("report: cannot read %s (%s)", path, exc)
    return records


def render_report(summary: dict, videos: list[dict], title: Optional[str] = None):
    """The report as a matplotlib ``Figure`` (not yet saved)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    (ax_hist, ax_status), (ax_stages, ax_videos) = fig.subplots(2, 2)
    n = summary.get("videos", len(videos))
    seconds = summary.get("seconds")
    members = ", ".join(summary.get("members") or []) or "?"
    fig.suptitle(title or f"dfdc_fast inference: {n} videos"
                 + (f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) else "")
                 + f" on {summary.get('device', '?')}; models: {members} ({summary.get('aggregator', '?')})",
                 fontsize=12)

    # 1. scores of the scored videos
    scores = [float(v["label"]) for v in videos if v.get("status") == "ok" and v.get("label") is not None]
    ax_hist.set_title(f"Scores written (P(FAKE)) of the {len(scores)} scored videos", fontsize=11)
    ax_hist.set_xlabel("score: probability the video is FAKE")
    ax_hist.set_ylabel("videos")
    ax_hist.set_xlim(0, 1)
    ax_hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_hist.grid(True, alpha=0.3)
    if scores:
        ax_hist.hist(scores, bins=[i / 20 for i in range(21)], color="tab:green", edgecolor="white")
        mean = sum(scores) / len(scores)
        ax_hist.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        ax_hist.axvline(0.5, color="grey", linestyle=":", linewidth=1, label="0.5 (the fallback, not drawn here)")
        ax_hist.legend(fontsize=8, loc="upper right")
    else:
        ax_hist.text(0.5, 0.5, "no video was scored", ha="center", va="center", transform=ax_hist.transAxes)

    # 2. statuses
    counts = dict(summary.get("statuses") or {})
    if not counts:
        for v in videos:
            counts[v.get("status", "?")] = counts.get(v.get("status", "?"), 0) + 1
    order = sorted(counts, key=lambda s: (s != "ok", -counts[s], s))
    fallback = sum(c for s, c in counts.items() if s != "ok")
    ax_status.set_title(f"Videos per status: {fallback} of {sum(counts.values())} written as the 0.5 fallback",
                        fontsize=11)
    bars = ax_status.barh(range(len(order)), [counts[s] for s in order],
                          color=[STATUS_COLOURS.get(s, "tab:brown") for s in order])
    ax_status.set_yticks(range(len(order)), [s if s == "ok" else f"{s} (0.5)" for s in order])
    ax_status.invert_yaxis()
    ax_status.set_xlabel("videos")
    ax_status.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_status.bar_label(bars, padding=3, fontsize=9)
    ax_status.margins(x=0.15)
    ax_status.grid(True, axis="x", alpha=0.3)
    refused = summary.get("refused") or []
    if refused:
        ax_status.text(0.98, 0.02, f"{len(refused)} names refused (no row)", ha="right", va="bottom",
                       transform=ax_status.transAxes, fontsize=9, color="dimgrey")

    # 3. the run's stages
    stages = summary.get("stage_seconds") or {}
    keys = [k for k in RUN_STAGES if k in stages] + [k for k in stages if k not in RUN_STAGES]
    values = [float(stages[k]) for k in keys]
    fixed = summary.get("fixed_s")
    ax_stages.set_title("Where the run's time went (summary.json stage_seconds)", fontsize=11)
    bars = ax_stages.barh(range(len(keys)), values, color="tab:blue")
    ax_stages.set_yticks(range(len(keys)), [RUN_STAGES.get(k, k) for k in keys])
    ax_stages.invert_yaxis()
    ax_stages.bar_label(bars, labels=[f"{v:.2f} s" for v in values], padding=3, fontsize=9)
    ax_stages.margins(x=0.2)
    ax_stages.grid(True, axis="x", alpha=0.3)
    notes = []
    if isinstance(seconds, (int, float)):
        notes.append(f"whole run {seconds:.1f} s")
    if isinstance(fixed, (int, float)):
        notes.append(f"fixed costs {fixed:.1f} s")
    if summary.get("steady_videos_per_s"):
        notes.append(f"steady {summary['steady_videos_per_s']} videos/s")
    if summary.get("workers") is not None:
        notes.append(f"workers: {summary['workers']}")
    ax_stages.set_xlabel("seconds" + (f"\n({', '.join(notes)})" if notes else ""))

    # 4. per video
    timed = [v for v in videos if v.get("timings")]
    total = {id(v): sum(float(v["timings"].get(k, 0.0)) for k in VIDEO_STAGES) for v in timed}
    shown = sorted(timed, key=lambda v: -total[id(v)])[:MOST_VIDEOS]
    shown.sort(key=lambda v: v.get("filename", ""))
    ax_videos.set_title(f"Seconds per video ({len(shown)} slowest of {len(timed)})" if len(timed) > len(shown)
                        else f"Seconds per video ({len(timed)} videos)", fontsize=11)
    left = [0.0] * len(shown)
    for key, label in VIDEO_STAGES.items():
        widths = [float(v["timings"].get(key, 0.0)) for v in shown]
        if any(widths):
            mean = sum(float(v["timings"].get(key, 0.0)) for v in timed) / len(timed)
            ax_videos.barh(range(len(shown)), widths, left=left, label=f"{label} (mean {mean:.2f} s)")
            left = [a + b for a, b in zip(left, widths)]
    names = [v.get("filename", "?") + ("" if v.get("status") == "ok" else f" ({v.get('status')})") for v in shown]
    ax_videos.set_yticks(range(len(shown)), names,
                         fontsize=max(5, min(9, int(220 / max(1, len(shown))))))
    ax_videos.invert_yaxis()
    ax_videos.set_xlabel("seconds (in the worker; workers run in parallel)")
    ax_videos.grid(True, axis="x", alpha=0.3)
    if shown:
        ax_videos.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    else:
        ax_videos.text(0.5, 0.5, "no per-video timings", ha="center", va="center", transform=ax_videos.transAxes)
    return fig


def write_report(path: str, summary: dict, videos: list[dict], title: Optional[str] = None) -> str:
    """Draw the report to ``path`` (PNG, replaced atomically); returns ``path``."""
    fig = render_report(summary, videos, title)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def report_from_folder(out: str, path: Optional[str] = None) -> str:
    """Draw ``out/report.png`` (or ``path``) from a finished run's ``summary.json`` and ``videos/``."""
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return write_report(path or os.path.join(out, "report.png"), summary, read_videos(out))
