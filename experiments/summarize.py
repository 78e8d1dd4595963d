"""Print a markdown table of an experiment's results.json: mean (and spread over seeds) of the
test accuracy per architecture, kernel and training-set size, with the time it took.

    python experiments/summarize.py experiments/out/digits_size
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def table(folder: Path) -> str:
    doc = json.loads((folder / "results.json").read_text())
    groups: dict[tuple, list[dict]] = {}
    for r in doc["rows"]:
        groups.setdefault((r["arch"], r["kernel"], r["n_train"]), []).append(r)
    lines = [f"`{doc['name']}` ({len(doc['rows'])} runs, {doc['wall_seconds'] / 60:.1f} min wall time, "
             f"{doc['machine']['cpus']} CPUs, torch {doc['machine']['torch']})", "",
             "| architecture | kernel | train | test | accuracy (mean ± sd over seeds) | seeds | ridge(s) | kernel time per run |",
             "|---|---|---|---|---|---|---|---|"]
    for (arch, kern, n), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        acc = [100 * r["accuracy"] for r in rows]
        sd = f" ± {statistics.stdev(acc):.1f}" if len(acc) > 1 else ""
        ridges = ", ".join(sorted({f"{r['ridge']:.0e}" if r["ridge"] else "0" for r in rows}))
        secs = statistics.mean(r["seconds"] for r in rows)
        lines.append(f"| {arch} | {kern} | {n} | {rows[0]['n_test']} | {statistics.mean(acc):.1f}%{sd} | "
                     f"{len(rows)} | {ridges} | {secs:.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    for f in sys.argv[1:]:
        print(table(Path(f)))
        print()
