"""Joining a Ray cluster, or starting a private one on 127.0.0.1, with token authentication on."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Optional

from dfdc_fast.errors import ConfigError

#: The pinned extra (setup.py ``extras_require["ray"]``).
RAY_EXTRA = 'pip install "dfdc_fast[ray]"'
#: Read by Ray when it is imported: "0" makes a local cluster use 127.0.0.1 for every
#: service instead of the machine's network address.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def require_ray():
    """The ``ray`` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def running_cluster() -> bool:
    """Whether ``ray start`` left the address of a cluster on this machine (or RAY_ADDRESS names one)."""
    tmp = os.environ.get("RAY_TMPDIR") or os.path.join(tempfile.gettempdir(), "ray")
    return bool(os.environ.get("RAY_ADDRESS")) or os.path.exists(os.path.join(tmp, "ray_current_cluster"))


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None) -> tuple[object, bool]:
    """``(ray, started)``: join the cluster at ``address`` ("auto", "HOST:PORT"); without one,
    the cluster this machine runs, else a private local one bound to 127.0.0.1 only. A
    session already initialised in this process (tests, notebooks) is used as it is.
    ``started`` says this call connected (so the caller disconnects)."""
    local = address is None and not running_cluster()
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    quiet = dict(include_dashboard=False, logging_level=logging.WARNING, configure_logging=True)
    if local:
        from ray._private import ray_constants  # how this process's Ray was imported

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise ConfigError(f"Ray was imported before dfdc_fast could keep a local cluster on 127.0.0.1: set "
                              f"{LOOPBACK_ENV}=0, or start one with `ray start --head` and pass --ray-address auto")
        ray.init(num_cpus=num_cpus, **quiet)
    else:
        try:
            ray.init(address=address or "auto", **quiet)
        except ConnectionError as exc:
            raise ConfigError(f"no Ray cluster at {address or 'auto'}: {exc} (start one with `ray start --head`, "
                              "or run `ray stop` to clear a stale address)") from None
    return ray, True
