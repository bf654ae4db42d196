"""Peak memory while refusing a deflate-bomb checkpoint vs while loading the shipped model.

The bomb is what ``torch.save({"w": torch.zeros(100_000_000)})`` writes, with its zip records
deflated at level 9: a ~390 kB file declaring a 400 MB tensor (built by streaming zeros, see
``tests/test_hardening.py::write_deflate_bomb``). Each case runs in a fresh Python process and
reports its peak resident set size (``VmHWM``):

* ``refuse-bomb``: ``read_checkpoint(bomb, max_bytes=checkpoint_budget_for(dataset))`` (refused);
* ``load-shipped``: the same call on ``assets/default_model.pt``, then ``model_from_state``;
* ``unguarded-bomb``: plain ``torch.load(bomb, weights_only=True)``, for reference.

    python benchmarks/checkpoint_bomb.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASE_CODE = r"""
import json, sys
import torch
from wsscl_core.checkpoints import DEFAULT_MODEL_FILE, checkpoint_budget_for, model_from_state, read_checkpoint
from wsscl_core.data import load_default_subset
from wsscl_core.errors import WssclError

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

case, bomb = sys.argv[1], sys.argv[2]
data = load_default_subset()
budget = checkpoint_budget_for(data)  # what the studio passes for a dataset (imports torchvision once)
before = peak_mb()
outcome = "loaded"
try:
    if case == "unguarded-bomb":
        torch.load(bomb, weights_only=True)
    elif case == "refuse-bomb":
        read_checkpoint(bomb, max_bytes=budget)
    else:
        state, meta = read_checkpoint(DEFAULT_MODEL_FILE, max_bytes=budget)
        model_from_state(state, meta, dataset=data)
except WssclError as exc:
    outcome = "refused: " + str(exc)
print(json.dumps({"case": case, "peak_before_mb": round(before, 1), "peak_mb": round(peak_mb(), 1),
                  "outcome": outcome[:160]}))
"""


def run_case(case: str, bomb: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CASE_CODE, case, str(bomb)], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=100_000_000, help="float32 elements the bomb declares")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case (the median is shown)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from test_hardening import write_deflate_bomb

    with tempfile.TemporaryDirectory() as tmp:
        bomb = write_deflate_bomb(Path(tmp) / "bomb.pt", args.numel)
        print(f"bomb: {bomb.stat().st_size / 1e3:.0f} kB on disk, declares {args.numel * 4 / 1e6:.0f} MB")
        results = {}
        for case in ("refuse-bomb", "load-shipped", "unguarded-bomb"):
            runs = sorted((run_case(case, bomb) for _ in range(args.repeats)), key=lambda r: r["peak_mb"])
            results[case] = runs[len(runs) // 2]
            r = results[case]
            print(f"{case:15s} peak RSS {r['peak_mb']:7.1f} MB (before the call {r['peak_before_mb']:.1f} MB)  "
                  f"{r['outcome']}")
    gap = results["refuse-bomb"]["peak_mb"] - results["load-shipped"]["peak_mb"]
    print(f"refusing the bomb minus loading the shipped model: {gap:+.1f} MB (required: within ±50 MB)")


if __name__ == "__main__":
    main()
