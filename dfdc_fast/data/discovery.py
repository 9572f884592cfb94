"""Finding the videos of a dataset, with labels when there are any.

Three layouts are recognised:

* ``dfdc_parts``: the DFDC training set, ``ROOT/dfdc_train_part_N/metadata.json`` + videos;
* ``metadata``: one folder with a DFDC-style ``metadata.json`` (``{"x.mp4": {"label": ...}}``);
* ``plain``: a folder of videos without labels (searched recursively).

Names in ``metadata.json`` are untrusted: a name that is absolute, contains ``..`` or
otherwise resolves outside the dataset root is rejected, never opened.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
LABELS = ("REAL", "FAKE")
_PART_RE = re.compile(r"^dfdc_train_part_(\d+)$")
#: The marker every dfdc_fast job leaves in its output folder (see dfdc_fast.files.FolderLock):
#: a folder holding it is a job's outputs, never a dataset's videos.
JOB_MARKER = ".dfdc_fast-job.json"
log = logging.getLogger("dfdc_fast.data")


@dataclass(frozen=True)
class VideoEntry:
    """One video of a dataset. ``part`` is ``""`` outside the DFDC part layout."""

    path: str
    name: str
    part: str = ""
    label: Optional[str] = None
    original: Optional[str] = None
    split: Optional[str] = None

    @property
    def key(self) -> str:
        """Unique id in the dataset: ``part/name`` (or ``name``)."""
        return f"{self.part}/{self.name}" if self.part else self.name

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.name))[0]


@dataclass
class Dataset:
    """The videos found under ``root`` and what did not line up with the metadata."""

    root: str
    layout: str
    videos: list[VideoEntry] = field(default_factory=list)
    #: listed in metadata.json but absent on disk
    missing: list[VideoEntry] = field(default_factory=list)
    #: video files on disk that metadata.json does not list (paths)
    unlisted: list[str] = field(default_factory=list)
    #: (name, reason) for metadata names refused as unsafe or malformed
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self):
        return iter(self.videos)

    def original_of(self, entry: VideoEntry) -> Optional[VideoEntry]:
        """The REAL video a FAKE was made from, when it is in the dataset (same part first)."""
        if not entry.original:
            return None
        index = self._by_name()
        return index.get((entry.part, entry.original)) or index.get(("*", entry.original))

    def _by_name(self) -> dict:
        cache = getattr(self, "_name_index", None)
        if cache is None:
            cache = {}
            for v in self.videos:
                cache[(v.part, v.name)] = v
                cache.setdefault(("*", v.name), v)
            self._name_index = cache
        return cache

    def counts(self) -> dict:
        labels: dict = {}
        for v in self.videos:
            labels[v.label or "unlabeled"] = labels.get(v.label or "unlabeled", 0) + 1
        return {
            "videos": len(self.videos), "labels": labels, "missing": len(self.missing),
            "unlisted": len(self.unlisted), "rejected": len(self.rejected),
        }

    def __repr__(self) -> str:
        return f"Dataset(root={self.root!r}, layout={self.layout!r}, {self.counts()})"


def is_video_file(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(path)


def safe_join(root: str, name: str, follow_links: bool = False) -> str:
    """``root/name`` if ``name`` is a relative path that stays inside ``root``; else ValueError.

    With ``follow_links`` a symbolic link inside ``root`` may point anywhere: the name must
    still stay inside ``root`` as written, and the link's target is returned (resolved once)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError("empty or malformed name")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ValueError("absolute path")
    parts = re.split(r"[\\/]+", name)
    if any(p == ".." for p in parts):
        raise ValueError("'..' would leave the dataset root")
    root_real = os.path.realpath(root)
    full = os.path.realpath(os.path.join(root_real, name))
    if os.path.commonpath([root_real, full]) != root_real and not follow_links:
        raise ValueError("resolves outside the dataset root (a symbolic link? --follow-links allows them)")
    return full


class _Pairs(list):
    """metadata.json's top level as (name, record) pairs, duplicates kept."""


def _load_metadata(path: str) -> list:
    def pairs(items):
        return _Pairs(items)

    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f, object_pairs_hook=pairs)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable metadata.json ({exc})") from exc
    if not isinstance(meta, _Pairs):
        raise ValueError(f"{path}: metadata.json must map file names to records, got {type(meta).__name__}")
    return [(name, dict(record) if isinstance(record, _Pairs) else record) for name, record in meta]


def _is_output(folder: str, exclude: frozenset) -> bool:
    """An output folder (a job's, or the running job's own): never scanned for inputs."""
    if os.path.realpath(folder) in exclude or os.path.isfile(os.path.join(folder, JOB_MARKER)):
        log.info("not reading %s: it is an output folder of dfdc_fast, never an input", folder)
        return True
    return False


def _scan_videos(folder: str, recursive: bool, follow_links: bool = False,
                 exclude: frozenset = frozenset()) -> list[str]:
    found = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and not _is_output(os.path.join(dirpath, d), exclude))
            found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(VIDEO_EXTENSIONS)]
    else:
        found = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.lower().endswith(VIDEO_EXTENSIONS)]
    root_real = os.path.realpath(folder)
    out, seen = [], set()
    for p in found:
        real = os.path.realpath(p)
        # a symbolic link that leads out of the dataset is not part of it (unless links are
        # followed); one that points at another video of it is the same video
        inside = follow_links or os.path.commonpath([root_real, real]) == root_real
        if os.path.isfile(real) and inside and real not in seen:
            seen.add(real)
            out.append(real)
    return out


def _scan_named(root: str, follow_links: bool,
                exclude: frozenset = frozenset()) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(path as found under ``root``, the file it is) of a plain folder's videos, and the
    (name, why) of links refused for leaving it. A video inside the root is named by where
    it is; one reached through a followed link by the link."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not _is_output(os.path.join(dirpath, d), exclude))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(VIDEO_EXTENSIONS)]
    out, refused, seen = [], [], set()
    for p in found:
        real = os.path.realpath(p)
        inside = os.path.commonpath([root, real]) == root
        if os.path.isfile(real) and not inside and not follow_links:
            refused.append((os.path.relpath(p, root), "a symbolic link out of the dataset folder (--follow-links "
                                                      "takes the file it points to)"))
        elif os.path.isfile(real) and real not in seen:
            seen.add(real)
            out.append((real if inside else p, real))
    return out, refused


def _read_folder_with_metadata(folder: str, part: str, ds: Dataset, follow_links: bool = False) -> None:
    meta = _load_metadata(os.path.join(folder, "metadata.json"))
    listed_paths = set()
    records: dict = {}
    for name, record in meta:  # a name listed twice: one record if they agree, else refused
        records.setdefault(name, []).append(record)
    for name, recs in records.items():
        shown = f"{part}/{name}" if part else name
        if any(r != recs[0] for r in recs[1:]):
            ds.rejected.append((shown, f"listed {len(recs)} times in metadata.json with different records"))
            continue
        record = recs[0]
        try:
            path = safe_join(folder, name, follow_links)
        except ValueError as exc:
            ds.rejected.append((shown, str(exc)))
            continue
        if not isinstance(record, dict):  # never silently unlabelled
            ds.rejected.append((shown, f"its record must be an object like {{\"label\": \"REAL\"}}, "
                                       f"got {type(record).__name__} {str(record)[:40]!r}"))
            continue
        original = record.get("original")
        if original is not None and not isinstance(original, str):
            ds.rejected.append((shown, f"its original must be a file name, got {type(original).__name__}"))
            continue
        label = record.get("label")
        if label is not None and label not in LABELS:
            ds.rejected.append((shown, f"label {label!r} is not one of {LABELS}"))
            continue
        entry = VideoEntry(path=path, name=name, part=part, label=label,
                           original=record.get("original") or None, split=record.get("split"))
        listed_paths.add(path)
        (ds.videos if os.path.isfile(path) else ds.missing).append(entry)
    ds.unlisted += [p for p in _scan_videos(folder, recursive=False, follow_links=follow_links) if p not in listed_paths]
    _refuse_aliases(ds)


def _refuse_aliases(ds: Dataset) -> None:
    """Two names for one file (a symbolic link beside its target): the file's own name keeps
    it (else the first in name order), the others are refused, so no video is processed twice."""
    def is_link(e: VideoEntry) -> bool:
        return os.path.islink(os.path.join(ds.root, e.part, e.name) if e.part else os.path.join(ds.root, e.name))

    owner: dict = {}
    for e in sorted(ds.videos, key=lambda e: (is_link(e), e.key)):
        owner.setdefault(os.path.realpath(e.path), e)
    kept = []
    for e in ds.videos:
        first = owner[os.path.realpath(e.path)]
        if first is e:
            kept.append(e)
        else:
            ds.rejected.append((e.key, f"the same file as {first.key}"))
    ds.videos[:] = kept


def discover(root: str | os.PathLike, layout: str = "auto", follow_links: bool = False,
             exclude: Iterable[str] = ()) -> Dataset:
    """Find the videos under ``root``.

    Args:
        root: the dataset folder.
        layout: ``"auto"`` (default: parts, then metadata.json, then plain), ``"dfdc_parts"``,
            ``"metadata"`` or ``"plain"``.
        follow_links: accept symbolic links that point out of ``root`` (a folder of links is
            the usual way to try a subset): each is resolved once and its entry's ``path`` is
            the target, its name the link's. Off by default: a link leaving the dataset is
            not part of it.
        exclude: folders not to search (a job's own output folder inside its input); any
            folder a dfdc_fast job made is skipped too, with a note.
    """
    allowed = ("auto", "dfdc_parts", "metadata", "plain")
    if layout not in allowed:
        raise ValueError(f"layout={layout!r}; allowed: {', '.join(allowed)}")
    root = os.path.realpath(os.fspath(root))
    if not os.path.isdir(root):
        raise NotADirectoryError(f"dataset root {root!r} is not a folder")
    skip = frozenset(os.path.realpath(os.fspath(p)) for p in exclude)
    if root in skip or os.path.isfile(os.path.join(root, JOB_MARKER)):
        raise ValueError(f"{root} is an output folder of dfdc_fast, not a dataset")
    parts = sorted(
        (int(m.group(1)), d) for d in os.listdir(root)
        if (m := _PART_RE.match(d)) and os.path.isdir(os.path.join(root, d))
    )
    if layout == "auto":
        if parts:
            layout = "dfdc_parts"
        elif os.path.isfile(os.path.join(root, "metadata.json")):
            layout = "metadata"
        else:
            layout = "plain"
    ds = Dataset(root=root, layout=layout)
    if layout == "dfdc_parts":
        if not parts:
            raise ValueError(f"{root}: no dfdc_train_part_N folders")
        for _, d in parts:
            folder = os.path.join(root, d)
            if os.path.isfile(os.path.join(folder, "metadata.json")):
                _read_folder_with_metadata(folder, d, ds, follow_links)
            else:
                ds.unlisted += _scan_videos(folder, recursive=False, follow_links=follow_links)
    elif layout == "metadata":
        _read_folder_with_metadata(root, "", ds, follow_links)
    else:
        found, ds.rejected = _scan_named(root, follow_links, skip)
        for link, path in found:
            ds.videos.append(VideoEntry(path=path, name=os.path.relpath(link, root)))
    return ds


def from_paths(paths: Iterable[str | os.PathLike], layout: str = "auto", follow_links: bool = False,
               exclude: Iterable[str] = ()) -> list[Dataset]:
    """Datasets for a command line's mix of folders and single video files.

    Loose files are grouped into one ``plain`` dataset per parent folder, named as given
    (a link keeps its own name); a file given twice, or under two names, counts once.
    """
    out: list[Dataset] = []
    loose: dict[str, Dataset] = {}
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            out.append(discover(p, layout, follow_links, exclude))
        else:
            real = os.path.realpath(p)
            if any(os.path.commonpath([real, x]) == x for x in exclude):
                log.info("not reading %s: it is in the output folder, never an input", p)
                continue
            given = os.path.abspath(p)
            parent = os.path.dirname(given)
            ds = loose.get(parent)
            if ds is None:
                ds = loose[parent] = Dataset(root=parent, layout="plain")
                out.append(ds)
            if all(e.name != os.path.basename(given) for e in ds.videos):
                ds.videos.append(VideoEntry(path=os.path.realpath(given), name=os.path.basename(given)))
    for ds in loose.values():
        _refuse_aliases(ds)
    return out
