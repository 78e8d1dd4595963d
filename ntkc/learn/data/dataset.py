"""`Dataset`, the one error type for data (`DataError`), and where data folders are looked for."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...errors import NtkcError


class DataError(NtkcError, ValueError):
    """Data files are missing or malformed, or a preprocessing request cannot be met."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of labelled images.

    x_train: float array [n_train, C, H, W]
    y_train: int64 array [n_train], values index `class_names`
    x_test:  float array [n_test, C, H, W]
    y_test:  int64 array [n_test]
    name: short name of the source ("cifar10", "digits", ...)
    class_names: one name per class, `class_names[label]`
    description: the source and every preprocessing step applied, in order
    meta: fitted statistics and loader facts, e.g. "batches_found", "channel_mean",
        "channel_std", "zca_mean", "zca_matrix", so new images can be transformed alike
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    class_names: tuple[str, ...]
    description: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def _with(self, step: str, **changes: Any) -> "Dataset":
        meta = {**self.meta, **changes.pop("meta", {})}
        return replace(self, description=f"{self.description}; {step}", meta=meta, **changes)


# ---------------------------------------------------------------------------------------------
# where data live


_PACKAGE_PARENT = Path(__file__).resolve().parents[3]  # the folder that holds the ntkc package


def default_data_dirs() -> list[Path]:
    """Folders searched when `data_dir` is not given, in order.

    `$NTKC_DATA_DIR` if set, then `./data`, then `../shared/data` relative to the repository
    root (where the project's test data live).
    """
    dirs = []
    if os.environ.get("NTKC_DATA_DIR"):
        dirs.append(Path(os.environ["NTKC_DATA_DIR"]))
    dirs.append(Path("data"))
    dirs.append(_PACKAGE_PARENT.parent / "shared" / "data")
    return dirs


def _find_folder(data_dir: str | Path | None, candidates: list[str], what: str, hint: str) -> Path:
    """The first of `data_dir/<candidate>` that is a folder (candidate "" = data_dir itself)."""
    roots = [Path(data_dir)] if data_dir is not None else default_data_dirs()
    tried = []
    for root in roots:
        for sub in candidates:
            path = root / sub if sub else root
            tried.append(str(path))
            if path.is_dir() and _looks_like(path, what):
                return path
    raise DataError(f"{what}: no data folder found; looked in " + ", ".join(tried), hint)


def _looks_like(path: Path, what: str) -> bool:
    if what == "cifar10":
        return any(path.glob("data_batch_*")) or (path / "test_batch").exists()
    return any(path.glob("*-idx[13]-ubyte*"))

