"""Which videos run together: a REAL video and its fakes, which reuse its boxes."""
from __future__ import annotations

from dfdc_fast.data import Dataset, VideoEntry


def video_groups(datasets: list[Dataset]) -> list[list[tuple[Dataset, VideoEntry]]]:
    """The videos in groups that must run together: a REAL video first, then its fakes
    (which reuse its boxes); a video whose original is absent is a group of its own."""
    groups: dict[tuple, list[VideoEntry]] = {}
    for ds in datasets:
        names = {e.name for e in ds.videos}
        for e in ds.videos:
            key = e.original if e.original in names else e.name
            groups.setdefault((ds.root, e.part or "", key), []).append(e)
    ds_of = {ds.root: ds for ds in datasets}
    return [[(ds_of[key[0]], e) for e in sorted(groups[key], key=lambda e: (e.name != key[2], e.key))]
            for key in sorted(groups)]


def ordered_shard(datasets: list[Dataset], shard_i: int, shard_n: int) -> list[tuple[Dataset, VideoEntry]]:
    """This shard's videos: a REAL video and its fakes stay together, the REAL one first."""
    return [item for gi, group in enumerate(video_groups(datasets)) if gi % shard_n == shard_i for item in group]
