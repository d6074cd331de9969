"""Devices: runner bundles cross-built per architecture, a devices file, and profiling over the system OpenSSH client."""
