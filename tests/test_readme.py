"""The README and the docs pages quote measured figures only from result files, and stay in step with them: every
plain fenced block (``` with no language: program output) names its result file on the line before it
(``<!-- result: PATH -->``), the file exists, and every line of the block is a line of the file. Command examples
carry a language (sh, console, toml, python) and are not results. The README stays a front page: at most 250
lines, its links resolving to files of the checkout."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- result: (?P<path>\S+) -->$")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_result_block_matches_its_result_file(page):
    problems, name = [], page.relative_to(ROOT)
    for lineno, lang, before, body in _blocks(page.read_text(encoding="utf-8")):
        if lang:
            continue
        m = MARKER.match(before)
        if not m:
            problems.append(
                f"{name}:{lineno}: a result block without <!-- result: benchmarks/results/FILE --> before it"
            )
            continue
        source = ROOT / m["path"]
        if not source.is_file():
            problems.append(f"{name}:{lineno}: {m['path']} does not exist")
            continue
        have = {ln.rstrip() for ln in source.read_text(encoding="utf-8").splitlines()}
        stale = [ln for ln in body if ln.strip() and ln.rstrip() not in have]
        if stale:
            problems.append(f"{name}:{lineno}: {len(stale)} line(s) not in {m['path']}, first: {stale[0]!r}")
    assert not problems, "\n".join(problems)


def test_every_result_file_a_page_names_exists():
    named = set()
    for page in PAGES:
        named |= set(re.findall(r"benchmarks/results/[\w./-]+\.(?:txt|png|json)", page.read_text(encoding="utf-8")))
    assert named and not [p for p in sorted(named) if not (ROOT / p).is_file()]


def test_the_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http", "#"))]
    assert links and not [t for t in links if not (ROOT / t).exists()], links
