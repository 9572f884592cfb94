"""``python -m dfdc_fast.extract``: face clips and crops for a whole dataset (resumable, shardable).

Per video, in worker processes (one per NVDEC engine on a GPU, one per core on a CPU of
more than 2 cores; on 2 cores or fewer in the job's own process, which measured faster):
decode every frame (NVDEC on a GPU, PyAV on the CPU; frames stay YUV) -> detect faces on
every n-th frame (batched MTCNN, the Medics' export settings: 0.5x, 0.6/0.7/0.7) -> track
them (3D connected components) -> cut, on the device, one square face clip per track and
chunk (256x256, the Medics' 3D training clips) and 2D face crops with a third of the
box as margin at K evenly spaced frames (Selim's) -> encode the clips in a pool of
encoder processes (libx264) while the workers go on with the next videos.

Outputs under OUT (<id> is the video's place in its dataset: <part>/<name> for DFDC):
  clips/<REAL|FAKE|_>/<part>_<name>_<chunk>_<track>.mp4   H.264 face clips
  crops/<id>/<track>_<frame>.jpg                          2D face crops
  videos/<id>.json            per video: status, info, tracks, outputs (written last: the video is done)
  index.csv                   one row per face clip, plus one per video without any (with its status)
  summary.json, contact_sheet.png, config-<shard>.json, settings.json

Statuses: ok, too_short (a clip under --min-clip-frames), no_face, decode_error, missing,
error. A FAKE whose REAL original is in the dataset reuses the original's boxes for its 2D
crops (--reuse-original 2d, as both seeds did), or for everything (all).
Re-running skips finished videos (refusing settings that would change their outputs,
unless --overwrite); --shard i/N, or torchrun, splits the work, keeping a REAL video and
its fakes in the same shard. A full disk stops the run with what is done intact; the
next run resumes. With no input it extracts the demo clips shipped in the package.
"""
from dfdc_fast.extract.config import DEMO_DIR, REUSE, ExtractConfig, SettingsMismatch, parse_shard
from dfdc_fast.extract.job import Extractor
from dfdc_fast.extract.run import run_extraction
from dfdc_fast.extract.report import INDEX_FIELDS
from dfdc_fast.extract.cli import build_parser, main

__all__ = ["DEMO_DIR", "REUSE", "ExtractConfig", "SettingsMismatch", "parse_shard", "Extractor", "run_extraction",
           "INDEX_FIELDS", "build_parser", "main"]
