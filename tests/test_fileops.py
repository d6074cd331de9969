"""Output folders that are whole or absent: a process SIGKILLed at each step of replacing a package leaves OUT as the
old or the new complete package (after the next start's clean-up, which puts back an old package moved aside)."""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit import fileops

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from edgekit import fileops

    step, out, swap = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "swap"
    real_replace, real_exchange, calls = os.replace, fileops.exchange, [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def replace(a, b):
        calls[0] += 1
        if step == f"before-replace-{calls[0]}":
            die()
        real_replace(a, b)
        if step == f"after-replace-{calls[0]}":
            die()

    def exchange(a, b):
        if not swap:
            return False  # a filesystem that cannot swap two folders: the two-rename path
        if step == "before-exchange":
            die()
        done = real_exchange(a, b)
        if step == "after-exchange":
            die()
        return done

    os.replace, fileops.exchange = replace, exchange
    with fileops.staged_output(out, force=True) as tmp:
        (tmp / "model.pte").write_bytes(b"new program")
        if step == "mid-write":
            die()
        (tmp / "manifest.json").write_text('{"v": "new"}')
    if step == "done":
        sys.exit(0)
""")


def _package(folder: Path, version: str) -> None:
    folder.mkdir()
    (folder / "model.pte").write_bytes(f"{version} program".encode())
    (folder / "manifest.json").write_text(json.dumps({"v": version}))


def _state(out: Path) -> str:
    """'old' or 'new' when OUT is that complete package; anything else fails the test."""
    assert out.is_dir(), f"{out} is missing"
    v = json.loads((out / "manifest.json").read_text())["v"]
    assert (out / "model.pte").read_bytes() == f"{v} program".encode(), "a package mixed from two versions"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.pte"]
    return v


@pytest.mark.parametrize(
    "swap, step, expect",
    [
        ("swap", "mid-write", "old"),
        ("swap", "before-exchange", "old"),
        ("swap", "after-exchange", "new"),
        ("swap", "done", "new"),
        ("rename", "mid-write", "old"),
        ("rename", "before-replace-1", "old"),
        ("rename", "after-replace-1", "old"),
        ("rename", "after-replace-2", "new"),
        ("rename", "done", "new"),
    ],
)
def test_a_package_killed_at_any_step_of_its_replacement_is_the_old_or_the_new_one(tmp_path, swap, step, expect):
    out = tmp_path / "pkg"
    _package(out, "old")
    p = subprocess.run([sys.executable, "-c", CHILD, step, str(out), swap], capture_output=True, text=True, timeout=60)
    assert p.returncode == (0 if step == "done" else -signal.SIGKILL), p.stderr
    if step == "after-replace-1":
        assert not out.exists()  # the one moment the two-rename path has no OUT: the next start puts the old one back
    fileops.check_output(out, force=True)  # what the next build does first
    assert _state(out) == expect
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]  # the dead process's temps are gone too


def test_a_live_processs_temps_are_left_alone(tmp_path):
    mine = tmp_path / fileops.temp_name("pkg")
    mine.mkdir()
    dead = tmp_path / f".pkg.{2**22 + 12345}.abcd.tmp"  # beyond pid_max: no such process
    dead.mkdir()
    assert fileops.remove_stale_temps(tmp_path) == [dead] and mine.exists()
