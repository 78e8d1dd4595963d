"""Progress of long computations on stderr: a tqdm bar fed with (done, total) pair counts."""
from __future__ import annotations

import sys


def progress_bar(label: str, quiet: bool):
    """A tqdm bar fed with (done, total) pair counts; None when quiet or not a terminal-less run."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm

    bar = {"b": None}

    def update(done: int, total: int) -> None:
        if bar["b"] is None:
            bar["b"] = tqdm(total=total, desc=label, unit="pair", unit_scale=True, leave=False,
                            file=sys.stderr, mininterval=0.5)
        bar["b"].n = done
        bar["b"].refresh()

    def close():
        if bar["b"] is not None:
            bar["b"].close()

    return update, close
