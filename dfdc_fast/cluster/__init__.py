"""``--executor ray``: extraction and inference on a Ray cluster (the optional extra ``dfdc_fast[ray]``).

One actor per GPU (or per CPU node) builds the per-GPU engine once and runs groups of
videos (a REAL video with its fakes) taken from a queue on the driver, largest first. The
per-video JSON stays the only completion record: the work of an actor that dies is
requeued, a video whose task ended its actor 3 times gets status ``error``, and the driver
rebuilds one index (extract) or one submission.csv (infer) from the records at the end.
This package holds what both jobs share (joining a cluster, the queue); their actors are
in :mod:`dfdc_fast.extract.on_ray` and :mod:`dfdc_fast.infer.on_ray`.
"""
from dfdc_fast.cluster.connect import RAY_EXTRA, connect, require_ray

__all__ = ["RAY_EXTRA", "connect", "require_ray"]
