"""Scale-out: where builds run (a local process pool or Dask distributed) and the shared content-addressed cache (fsspec)."""
