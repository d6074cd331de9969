"""Every default location edgekit reads or writes, in one place.

In the project (relative to the working directory):

    .edgekit/cache/builds     the build cache (``--cache``, ``$EDGEKIT_BUILD_CACHE``): see :mod:`edgekit.builds`
    .edgekit/bench            stored benchmark runs and baselines (``--store``)

For the user (``$EDGEKIT_CACHE``, default ``~/.cache/edgekit``):

    native-runner/            the compiled native profiling runner, per executorch version and source hash
    wheels/, bundles/         foreign-arch executorch wheels and the runner bundles built from them
    cache-mirror/             local copies of remote build-cache entries (an ``s3://`` cache), to read as folders

Elsewhere: the devices file ``~/.config/edgekit/devices.toml`` (``--devices``, ``$EDGEKIT_DEVICES``), and on each
device its ``workdir`` (default ``.cache/edgekit`` under the login's home).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(".edgekit")
BUILD_CACHE = PROJECT_DIR / "cache" / "builds"
BENCH_STORE = PROJECT_DIR / "bench"
DEVICES_FILE = Path("~/.config/edgekit/devices.toml")
DEVICE_WORKDIR = ".cache/edgekit"


def user_cache() -> Path:
    """``$EDGEKIT_CACHE``, else ``~/.cache/edgekit``."""
    return Path(os.environ.get("EDGEKIT_CACHE") or Path.home() / ".cache" / "edgekit")


def cache_mirror() -> Path:
    """Where entries of a remote build cache are copied to be read as local folders."""
    return user_cache() / "cache-mirror"
