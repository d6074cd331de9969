"""The README quotes measured figures only from result files, and stays in step with them: every plain fenced block
(``` with no language: program output) names its result file on the line before it (``<!-- result: PATH -->``), the
file exists, and every line of the block is a line of the file. Command examples carry a language (sh, console,
toml, python) and are not results."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- result: (?P<path>\S+) -->$")


def _blocks(text: str) -> list[tuple[int, str, str, list[str]]]:
    """(line number, language, the line before it, its lines) of every fenced block."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
            out.append((start + 1, lang, before.strip(), lines[start + 1 : j]))
            i = j
        i += 1
    return out


def test_every_quoted_result_block_matches_its_result_file():
    problems = []
    for lineno, lang, before, body in _blocks((ROOT / "README.md").read_text(encoding="utf-8")):
        if lang:
            continue
        m = MARKER.match(before)
        if not m:
            problems.append(
                f"README.md:{lineno}: a result block without <!-- result: benchmarks/results/FILE --> before it"
            )
            continue
        source = ROOT / m["path"]
        if not source.is_file():
            problems.append(f"README.md:{lineno}: {m['path']} does not exist")
            continue
        have = {ln.rstrip() for ln in source.read_text(encoding="utf-8").splitlines()}
        stale = [ln for ln in body if ln.strip() and ln.rstrip() not in have]
        if stale:
            problems.append(f"README.md:{lineno}: {len(stale)} line(s) not in {m['path']}, first: {stale[0]!r}")
    assert not problems, "\n".join(problems)


def test_every_result_file_the_readme_names_exists():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"benchmarks/results/[\w./-]+\.(?:txt|png|json)", text))
    assert named and not [p for p in sorted(named) if not (ROOT / p).is_file()]
