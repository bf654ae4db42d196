"""Is one method's lead over the others more than seed noise? Avg.Gap paired by split seed.

    PYTHONPATH=. python benchmarks/paired_seeds.py --method wsscl RUN1.json RUN2.json ...

The bench table gives each method's mean ± standard deviation over seeds; two methods whose spreads overlap
may still differ on every seed, since both run on the same splits. This pairs every other method's Avg.Gap
with ``--method``'s on each split seed both have, and prints the mean difference with its standard error,
Student's t and the seeds where ``--method`` is lower. The untouched original is a row like any other.

The files are bench JSON of one setting, for example seeds 0-2 of every method and further seeds of a few.
Each row is already scored against its own seed's Retrain. A row two files share (Retrain and the Original
of a seed both runs have) must score the same in both, as it does when both ran on one machine.
"""

from __future__ import annotations

import argparse
from benchmarks.paired_runs import gaps_by_setting
from wsscl_core.bench import REFERENCE, label_of
from wsscl_core.tune import paired_gain


def gaps_by_method(paths: list[str]) -> tuple[str, dict[str, dict[int, float]]]:
    """The forget set and method → split seed → Avg.Gap, from complete bench JSON files of one setting."""
    by_setting = gaps_by_setting(paths)
    if len(by_setting) != 1:
        raise SystemExit(f"The files hold more than one forget set: {sorted(by_setting)}.")
    return next(iter(by_setting.items()))


def paired_table(gaps: dict[str, dict[int, float]], method: str) -> str:
    """A markdown table: each other method's Avg.Gap minus ``method``'s over the seeds both have."""
    if method not in gaps:
        raise SystemExit(f"No rows of {method!r}; the files hold {', '.join(sorted(gaps))}.")
    ours = {str(s): g for s, g in gaps[method].items()}
    lines = [f"| method | seeds | Avg.Gap | {label_of(method)} | minus {label_of(method)} (mean ± SE) | t "
             f"| seeds where {label_of(method)} is lower |", "|---|---|---|---|---|---|---|"]
    for other in sorted(gaps, key=lambda m: sum(gaps[m].values()) / len(gaps[m])):
        if other in (method, REFERENCE):
            continue
        theirs = {str(s): g for s, g in gaps[other].items()}
        seeds = sorted(ours.keys() & theirs.keys(), key=int)
        gain = paired_gain({s: theirs[s] for s in seeds}, {s: ours[s] for s in seeds})
        if gain is None:
            lines.append(f"| {label_of(other)} | {','.join(seeds) or '—'} | — | — | — | — | — |")
            continue
        mean, se = gain
        t = f"{mean / se:.2f}" if se > 0 else "—"
        lower = sum(ours[s] < theirs[s] for s in seeds)
        lines.append(f"| {label_of(other)} | {','.join(seeds)} | {sum(theirs[s] for s in seeds) / len(seeds):.2f} "
                     f"| {sum(ours[s] for s in seeds) / len(seeds):.2f} | {mean:+.2f} ± {se:.2f} | {t} "
                     f"| {lower} of {len(seeds)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="bench JSON files of one setting (forget set, dataset, model)")
    parser.add_argument("--method", default="wsscl", help="the method every other is paired with")
    args = parser.parse_args(argv)
    forget, gaps = gaps_by_method(args.files)
    print(f"{forget}: Avg.Gap of each method minus {label_of(args.method)}'s on the same split seeds "
          f"(positive: {label_of(args.method)} is lower)\n")
    print(paired_table(gaps, args.method))


if __name__ == "__main__":
    main()
