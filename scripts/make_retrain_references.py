"""Build the shipped Retrain references for ``assets/default_model.pt``.

    python scripts/make_retrain_references.py            # resumes: skips references already built
    python scripts/make_retrain_references.py --rebuild  # builds every one again

For each forget set in ``wsscl_core.studio.references.REFERENCE_REQUESTS`` (every single class and
the default random splits) it runs Retrain through the one run pipeline (the original's recipe, from
its checkpoint), stores the model in float16 with its scores (computed from those float16 weights)
under ``assets/retrain_references/``, and rewrites ``manifest.json`` after each one. Every file and
the manifest record the shipped model's identity (dataset fingerprint, hash of its weights); the
studio ignores them, with a note, when the model it runs on differs. Last, it scores the untouched
original on the same forget sets (``original_scores.pt``, a few seconds each), so the studio shows the
original's row without scoring it while a run trains.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from wsscl_core.studio import references  # noqa: E402
from wsscl_core.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=references.REFERENCE_DIR)
    parser.add_argument("--rebuild", action="store_true", help="build every reference again")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ws = open_workspace(device="cpu")
    identity = references.workspace_identity(ws)
    print(f"original: {ws.model_name} on {ws.data.name}, dataset {identity.dataset_fingerprint}, "
          f"weights {identity.original_weights}; recipe {ws.recipe.to_dict()}", flush=True)
    todo = list(references.REFERENCE_REQUESTS) if args.rebuild else references.missing_requests(ws, args.out)
    done = [references.manifest_entry(args.out / f"{references.reference_name(s, seed)}.pt")
            for s, seed in references.REFERENCE_REQUESTS if (s, seed) not in todo]
    print(f"{len(done)} already built, {len(todo)} to build", flush=True)
    if done:
        references.write_manifest(ws, done, args.out)
    for n, (spec, seed) in enumerate(todo, 1):
        name = references.reference_name(spec, seed)
        began, last = time.perf_counter(), [0.0]

        def progress(event, name=name, n=n) -> None:
            now = time.perf_counter()
            if now - last[0] >= 10 or event.kind == "phase_end":
                last[0] = now
                print(f"  [{n}/{len(todo)}] {name}: {event.fraction_done:5.1%}, {now - began:5.0f} s", flush=True)

        entry = references.build_reference(ws, spec, seed, args.out, on_progress=progress)
        done = [e for e in done if e["file"] != entry["file"]] + [entry]
        references.write_manifest(ws, done, args.out)
        scores = ", ".join(f"{k} {v:.2f}" for k, v in entry["scores"].items())
        print(f"[{n}/{len(todo)}] {name}: Retrain {entry['rte_s']:.0f} s, {entry['bytes'] / 1024:.0f} KB; {scores}",
              flush=True)
    began = time.perf_counter()
    path = references.build_original_scores(
        ws, args.out, lambda name, n, total: print(f"  the original on {name} ({n}/{total})", flush=True))
    print(f"the original's scores on the {len(references.REFERENCE_REQUESTS)} forget sets: {path.name}, "
          f"{time.perf_counter() - began:.0f} s", flush=True)
    total = references.references_total_bytes(args.out)
    print(f"{len(done)} references, {total / 1024:.0f} KB in {args.out}", flush=True)


if __name__ == "__main__":
    main()
