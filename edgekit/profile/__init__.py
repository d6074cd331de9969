"""The profiler: a watched worker process (native C++ runner or Python) measuring latency, memory and energy.

``edgekit.profile`` is both this package and the entry point: the module is callable, so
``edgekit.profile("build/net", runs=200)`` and ``edgekit.profile.ProfileResult`` both work.
"""

import sys
import types

from ..runner.protocol import Engine
from .harness import profile
from .options import ProfileOptions
from .result import EnergyResult, MemoryResult, Phases, ProfileResult

__all__ = ["Engine", "EnergyResult", "MemoryResult", "Phases", "ProfileOptions", "ProfileResult", "profile"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return profile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
