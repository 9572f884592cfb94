"""Benchmark helpers shared by ``benchmarks/*.py``: timing, machine facts, the result JSON.

Method (after kornia's benchmark contract): warm-up outside the timed region, device
sync inside it, every run kept, medians and ratios from the same process.
"""
from dfdc_fast.bench.cli import add_common_args, clips_or_exit, prepare, read_frames_cv2
from dfdc_fast.bench.env import environment
from dfdc_fast.bench.inputs import DEFAULT_SAMPLES, repeated_clips, sample_clips
from dfdc_fast.bench.timing import Timing, time_runs
from dfdc_fast.bench.report import WrittenOnStop, result_path, write_result

__all__ = ["add_common_args", "clips_or_exit", "prepare", "read_frames_cv2", "DEFAULT_SAMPLES", "repeated_clips", "sample_clips", "environment", "Timing", "time_runs", "result_path", "write_result", "WrittenOnStop"]
