"""Package discovery (the metadata is in pyproject.toml).

Every package under edgekit/ is found, so a new one can never be left out of the wheel (a hand-written list once
left out edgekit.tune, and every command of an installed wheel died on import). The built-in target files live in the
top-level targets/ folder, where users look for them, and install as the package edgekit.builtin_targets.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["edgekit", "edgekit.*"]) + ["edgekit.builtin_targets"],
    package_dir={"edgekit.builtin_targets": "targets"},
)
