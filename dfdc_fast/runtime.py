"""Process-wide settings the command-line jobs apply before they start.

Kept out of ``import dfdc_fast``: a library should not change its host's allocator, but
the jobs own their process.
"""
from __future__ import annotations

import os


def tune_host_allocator() -> None:
    """Back large CPU tensors with transparent huge pages (unless the user decided otherwise).

    A decoded 1080p clip is one ~1.9 GB tensor; filling fresh 4 KiB pages costs one page
    fault each, which made CPU decoding ~20% slower than it needs to be. PyTorch's CPU
    allocator madvises huge pages for large blocks when THP_MEM_ALLOC_ENABLE=1 (read at
    allocation time). Set THP_MEM_ALLOC_ENABLE=0 to keep the default.
    """
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
