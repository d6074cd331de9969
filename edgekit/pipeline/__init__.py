"""The build pipeline: export → prune → quantize → lower → verify → package."""

from .build import STAGES, BuildResult, StageEvent, build

__all__ = ["STAGES", "BuildResult", "StageEvent", "build"]
