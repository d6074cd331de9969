"""The measured process and how a parent talks to it: ``runner.cpp`` (the native runner: no Python, no torch),
``native.py`` (compiling and caching it against the executorch wheel), ``pyworker.py`` (the Python fallback engine),
``protocol.py`` (the options every worker takes, its progress lines and its result document) and ``worker.py``
(starting a worker and watching it: phases, progress, timeout, crashes). :mod:`edgekit.profile` measures with it
here; :mod:`edgekit.device` runs the same runner on boards.
"""
