"""A patch to Dask's configuration (see :mod:`edgekit.upstream` for the registry): its own defaults put back where a
``dask.config.set`` block dropped them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def dask_defaults_restored() -> Iterator[None]:
    """Put back Dask's own defaults that a ``dask.config.set`` block dropped, leaving every set value as it is, for
    what runs inside the block.

    ``distributed`` registers its defaults when first imported; imported inside a user's ``dask.config.set`` block
    (``distributed.comm.tls.*`` to give the client its certificates, say), they are removed with the block's keys
    when it ends, and the next ``Security()`` fails with ``KeyError: 'require-encryption'``. The defaults go into
    Dask's global configuration for the rest of the process (as importing ``distributed`` put them there), and into a
    mapping the user set whole where it lacks them."""
    import copy

    import dask

    for defaults in dask.config.defaults:
        dask.config.update(dask.config.config, copy.deepcopy(defaults), priority="old")
    yield
