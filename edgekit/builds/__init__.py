"""The build room: the content-addressed build cache and its sub-folders, content keys, and the queue that builds
through an executor into the cache. ``bench run``, ``edgekit tune`` and the executors use these public names.

Modules: :mod:`~edgekit.builds.cache` (the cache's layout, atomic writes, calibration records, measurements, attempts,
prune and usage), :mod:`~edgekit.builds.keys` (what a build and a measurement depend on), :mod:`~edgekit.builds.queue`
(jobs, the queue, the task an executor runs). Default locations are in :mod:`edgekit.paths`.
"""

from .cache import SUBFOLDERS, BuildCache, CacheEntry, CacheError, CalibrationRecords, Usage, parse_age
from .keys import (
    STACK_KEYS,
    build_key,
    edgekit_source_digest,
    file_digest,
    measurement_key,
    source_digest,
    stack_facts,
    versions,
)
from .queue import BuildJob, BuildQueue, Built, ModelEntry, build_task

__all__ = [
    "SUBFOLDERS",
    "STACK_KEYS",
    "BuildCache",
    "BuildJob",
    "BuildQueue",
    "Built",
    "CacheEntry",
    "CacheError",
    "CalibrationRecords",
    "ModelEntry",
    "Usage",
    "build_key",
    "build_task",
    "edgekit_source_digest",
    "file_digest",
    "measurement_key",
    "parse_age",
    "source_digest",
    "stack_facts",
    "versions",
]
