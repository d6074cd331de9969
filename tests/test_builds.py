"""The build room's cache on a real folder: calibration records under concurrent writers, whole-or-absent measurement
files, prune and du over every sub-folder, and attempts counted per run."""

import datetime as dt
import os
import subprocess
import sys
import textwrap

from helpers import run_cli

from edgekit.builds import SUBFOLDERS, BuildCache

WRITER = textwrap.dedent("""
    import sys, torch
    from edgekit.builds import BuildCache

    records, who = BuildCache(sys.argv[1]).calibration_records(), sys.argv[2]
    for i in range(25):  # read-merge-write against another process doing the same to the same record
        records.put("rec", {f"{who}-{i}": {"min_val": torch.tensor([float(i)])}})
""")


def test_two_processes_adding_to_one_calibration_record_keep_every_state(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who]) for who in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    states = BuildCache(tmp_path).calibration_records().get("rec")
    assert sorted(states) == sorted(f"{w}-{i}" for w in "ab" for i in range(25))
    assert float(states["b-7"]["min_val"]) == 7.0


def test_a_damaged_measurement_reads_as_none_and_is_measured_again(tmp_path):
    cache = BuildCache(tmp_path)
    cache.put_measurement("k", {"p50": 1.0, "samples": [1.0]})
    assert cache.measurement("k") == {"p50": 1.0, "samples": [1.0]}
    (tmp_path / ".measurements" / "k.json").write_text('{"p50": 1.0, "sam')  # what a kill mid-write once left
    assert cache.measurement("k") is None
    assert [p.name for p in (tmp_path / ".measurements").iterdir()] == ["k.json"]  # no temp files left behind


def test_prune_and_du_cover_every_sub_folder_and_attempts_count_this_run_only(tmp_path):
    cache = BuildCache(tmp_path)
    cache.put_measurement("k", {"p50": 1.0})
    cache.calibration_records().put("rec", {"x": {}})
    cache.mark_attempt("key", "run1", "host:1")
    cache.mark_attempt("key", "run1", "host:2")  # a worker died in run1 and another built it
    cache.mark_attempt("key", "run2", "host:3")
    assert cache.attempts("key", "run2") == 1 and cache.attempts("key", "run1") == 2
    cache.mark_attempt("key", "run3", "host:4")
    dead = tmp_path / ".measurements" / f".k.json.{2**22 + 7}.beef.tmp"  # a killed writer's temp file
    dead.write_text("{")
    r = run_cli("cache", "du", "--cache", str(tmp_path))
    assert r.exit_code == 0 and all(sub in r.stdout for sub in SUBFOLDERS), r.output
    old = (dt.datetime.now() - dt.timedelta(days=40)).timestamp()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            os.utime(f, (old, old))
    r = run_cli("cache", "prune", "--cache", str(tmp_path), "--older-than", "30d")
    # a measurement, a calibration shard, run3's attempt mark and the dead temp file
    assert r.exit_code == 0 and "removed 0 entries and 4 other file(s)" in r.stdout, r.output
    assert not [f for f in tmp_path.rglob("*") if f.is_file()]


def test_hf_folders_and_gguf_files_key_builds_by_their_contents(tmp_path):
    """New weights at the same path are a new build: the content key hashes every file of an hf: folder and the
    GGUF file itself (not the spec's text, not the gguf Python package)."""
    from edgekit.builds.keys import source_digest

    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights-1")
    before = source_digest(f"hf:{folder}")
    (folder / "model.safetensors").write_bytes(b"weights-2")
    assert source_digest(f"hf:{folder}") != before and not before.startswith("unresolved")
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"GGUF one")
    b.write_bytes(b"GGUF two")
    assert source_digest(f"gguf:{a}") != source_digest(f"gguf:{b}")


def test_a_remote_cache_entry_read_by_four_threads_at_once_is_copied_once_and_stays_whole(fp32_build, tmp_path):
    """An fsspec cache that is not a folder (memory:// here, s3:// for users): entries are read through a local
    mirror. Readers at once must not delete the copy another is reading; a corrupt remote entry is still caught."""
    from concurrent.futures import ThreadPoolExecutor

    import fsspec

    url = f"memory://edgekit-test/{tmp_path.name}"
    cache, mirror = BuildCache(url), tmp_path / "mirror"
    assert not cache.local
    cache.put("k1", fp32_build.out_dir)
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: cache.get("k1", mirror), range(4)))
    assert folders == [mirror / "k1"] * 4 and not cache.warnings
    assert (mirror / "k1" / "model.pte").read_bytes() == (fp32_build.out_dir / "model.pte").read_bytes()
    assert sorted(p.name for p in mirror.iterdir()) == [".k1.lock", "k1"]  # no temp copy left behind
    fsspec.filesystem("memory").pipe_file(f"{cache.root}/k1/model.pte", b"garbage")  # the remote entry damaged
    (mirror / "k1" / "model.pte").write_bytes(b"garbage")
    assert cache.get("k1", mirror) is None and "corrupt" in cache.warnings[0]
