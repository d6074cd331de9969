"""Open an edgekit HTML report in a real browser (headless Chromium) and check that it renders.

Checks: the page loads, both embedded plots decode to images of real size, the tables are there, and the
screenshot is not blank. Needs Debian's chromium (`apt-get install chromium`); not part of `make test`.

    .venv/bin/python benchmarks/render_report.py report/index.html [--screenshot report.png]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("html")
    ap.add_argument("--screenshot", default=None)
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    url = Path(args.html).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        # Ask the page itself whether its images decoded: a script writes their natural sizes into the DOM.
        probe = Path(profile) / "probe.html"
        probe.write_text(f"""<!doctype html><iframe id=f src="{url}" width=1200 height=3000></iframe><pre id=out></pre>
<script>document.getElementById('f').onload=()=>{{const d=document.getElementById('f').contentDocument;
const imgs=[...d.images].map(i=>i.naturalWidth+'x'+i.naturalHeight);
document.getElementById('out').textContent='IMAGES '+imgs.join(' ')+' TABLES '+d.querySelectorAll('table').length+
' ROWS '+d.querySelectorAll('tr').length;}};</script>""")
        dom = subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--allow-file-access-from-files",
                "--virtual-time-budget=5000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        shot = args.screenshot or str(Path(profile) / "shot.png")
        subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,3000", f"--screenshot={shot}", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        m = re.search(r"IMAGES ([\dx ]*) TABLES (\d+) ROWS (\d+)", dom)
        if not m:
            print("FAIL: the page did not report its images (did it load?)")
            return 1
        sizes = [tuple(map(int, s.split("x"))) for s in m.group(1).split()]
        from PIL import Image

        img = Image.open(shot).convert("L")
        hist = img.histogram()  # 256 grey levels
        non_white = sum(hist[:240]) / (img.width * img.height)
    ok = len(sizes) >= 2 and all(w > 300 and h > 200 for w, h in sizes) and int(m.group(2)) >= 1 and non_white > 0.02
    print(
        f"{'OK' if ok else 'FAIL'}: {len(sizes)} image(s) decoded {sizes}, {m.group(2)} table(s), {m.group(3)} rows, "
        f"{non_white:.1%} of the screenshot is ink" + (f"; screenshot {args.screenshot}" if args.screenshot else "")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
