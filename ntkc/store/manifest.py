"""The Gram store's manifest: what it records, its schema checked on every open, and the binding
that ties each tile to its store.

The manifest is written by ntkc alone (atomically), so a manifest that does not fit the schema
was edited or damaged; it is refused with what is wrong, never half-read (a changed `data.train.n`
would otherwise size every matrix wrongly, and `fuse: "no"` would read as true).

Format version 2 binds tiles: a tile's checksum is keyed with `binding(manifest)`, a hash of the
store's random `store_id` and everything that decides the tile's bits, and covers the tile's
block and position as well as its bytes. A tile copied from another store, or moved to another
position, fails its checksum and is computed again. Version 1 stores (unbound checksums) are
refused with a message saying so.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
import uuid

from ..errors import NtkcError
from ..util.precision import PRECISIONS
from ..util.versions import versions

FORMAT = "ntkc-gram-store"
VERSION = 2
BLOCKS = {  # name: (row side, column side, symmetric)
    "train_train": ("train", "train", True),
    "test_train": ("test", "train", False),
    "test_test": ("test", "test", True),
}
MATCH_KEYS = (  # manifest entries that must agree for a store to be resumed
    ("architecture", ("arch", "sha256")),
    ("training images", ("data", "train", "sha256")),
    ("test images", ("data", "test", "sha256")),
    ("precision", ("dtype",)),
    ("backend", ("backend",)),
    ("tile size", ("tile",)),
)  # the pair batch and fusion are taken from the store on resume (see store.job.open_store)
_HEX = re.compile(r"^[0-9a-f]+$")


class StoreError(NtkcError):
    """A Gram store that cannot be used as asked, or a write that failed."""


def array_digest(x) -> str:
    """A hash of an array's dtype, shape and values (for the manifest's dataset entries)."""
    import numpy as np

    a = np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


def make_manifest(arch_source: str, arch_file: str, x_train, x_test, *, description: str, dtype: str,
                  backend: str, tile: int, batch: int, fuse: bool, blocks: tuple[str, ...]) -> dict:
    """The manifest of a computation: everything that decides the bits of its tiles."""
    data = {"description": description, "train": {"n": int(x_train.shape[0]), "shape": list(x_train.shape),
                                                   "sha256": array_digest(x_train)}}
    if x_test is not None:
        data["test"] = {"n": int(x_test.shape[0]), "shape": list(x_test.shape), "sha256": array_digest(x_test)}
    else:
        data["test"] = {"n": 0, "shape": [], "sha256": None}
    for b in blocks:
        if b not in BLOCKS:
            raise StoreError(f"unknown block {b!r}", hint=f"blocks are {', '.join(BLOCKS)}")
        if "test" in BLOCKS[b][:2] and x_test is None:
            raise StoreError(f"block {b} needs test images")
    return {
        "format": FORMAT, "version": VERSION, "store_id": uuid.uuid4().hex,
        "arch": {"file": str(arch_file), "source": arch_source,
                 "sha256": hashlib.sha256(arch_source.encode()).hexdigest()},
        "data": data, "dtype": dtype, "backend": backend, "tile": int(tile), "batch": int(batch),
        "fuse": bool(fuse), "blocks": list(blocks), "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def binding(manifest: dict) -> bytes:
    """The key a store's tile checksums are made with: its id and every entry that decides
    the bits of a tile (not the blocks, which may grow, nor the dates and versions)."""
    m = manifest
    bound = {"store_id": m["store_id"], "arch": m["arch"]["sha256"], "dtype": m["dtype"],
             "backend": m["backend"], "tile": m["tile"], "batch": m["batch"], "fuse": m["fuse"],
             "data": {side: [m["data"][side]["shape"], m["data"][side]["sha256"]] for side in ("train", "test")}}
    return hashlib.blake2b(json.dumps(bound, sort_keys=True).encode(), digest_size=32).digest()


def get(d: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def check(m, where: str) -> dict:
    """`m` if it is a manifest of this format and version that fits the schema; StoreError naming
    the first entry that does not, otherwise."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise StoreError(f"{where} is not an ntkc Gram store manifest")
    version = m.get("version")
    if version == 1:
        raise StoreError(
            f"{where} belongs to a version 1 store, whose tile checksums are not bound to their store and "
            f"position; this ntkc reads and writes version {VERSION} only",
            "compute the kernels again into a new --store folder (the old folder's assembled matrices, "
            "*.nngp.npy and *.ntk.npy, are plain .npy files that numpy.load still reads)")
    if version != VERSION:
        raise StoreError(f"{where} is a version {version!r} store; this ntkc reads version {VERSION}",
                         "use the ntkc that made it, or compute the kernels again into a new folder")
    problem = _schema_problem(m)
    if problem:
        raise StoreError(f"{where} is damaged or was edited by hand: {problem}",
                         "ntkc writes the manifest atomically and never leaves it like this; restore it, or move "
                         "the store away and compute it again")
    return m


def _int(v) -> bool:
    return type(v) is int  # not bool, not a float, not a string


def _schema_problem(m: dict) -> str | None:
    def want(path: str, ok: bool, what: str) -> str | None:
        if ok:
            return None
        value = get(m, tuple(path.split(".")))
        return f"`{path}` must be {what}, found {json.dumps(value)[:60]}"

    arch, data = m.get("arch"), m.get("data")
    checks = [
        want("store_id", isinstance(m.get("store_id"), str) and bool(_HEX.match(m["store_id"])), "a hex string"),
        want("arch", isinstance(arch, dict), "an object with file, source and sha256"),
    ]
    if isinstance(arch, dict):
        checks += [
            want("arch.file", isinstance(arch.get("file"), str), "a string"),
            want("arch.source", isinstance(arch.get("source"), str), "a string"),
            want("arch.sha256", isinstance(arch.get("sha256"), str) and isinstance(arch.get("source"), str)
                 and arch["sha256"] == hashlib.sha256(arch["source"].encode()).hexdigest(),
                 "the SHA-256 of arch.source"),
        ]
    checks.append(want("data", isinstance(data, dict), "an object with train and test"))
    if isinstance(data, dict):
        for side, least in (("train", 1), ("test", 0)):
            d = data.get(side)
            checks.append(want(f"data.{side}", isinstance(d, dict), "an object with n, shape and sha256"))
            if not isinstance(d, dict):
                continue
            n, shape = d.get("n"), d.get("shape")
            checks.append(want(f"data.{side}.n", _int(n) and n >= least, f"an integer >= {least}"))
            empty = _int(n) and n == 0
            checks.append(want(f"data.{side}.shape", isinstance(shape, list) and (
                (empty and shape == []) or (len(shape) == 4 and all(_int(s) and s >= 1 for s in shape)
                                            and shape[0] == n)), f"[n, C, H, W] with n = data.{side}.n"))
            checks.append(want(f"data.{side}.sha256", (d.get("sha256") is None and empty) or
                               (isinstance(d.get("sha256"), str) and bool(_HEX.match(d["sha256"]))), "a hex string"))
    blocks = m.get("blocks")
    has_test = isinstance(data, dict) and isinstance(data.get("test"), dict) and _int(data["test"].get("n")) \
        and data["test"]["n"] > 0
    checks += [
        want("dtype", m.get("dtype") in PRECISIONS, " or ".join(PRECISIONS)),
        want("backend", isinstance(m.get("backend"), str) and bool(m.get("backend")), "a backend's name"),
        want("tile", _int(m.get("tile")) and m["tile"] >= 1, "an integer >= 1"),
        want("batch", _int(m.get("batch")) and m["batch"] >= 1, "an integer >= 1"),
        want("fuse", isinstance(m.get("fuse"), bool), "true or false"),
        want("blocks", isinstance(blocks, list) and "train_train" in blocks and len(set(map(str, blocks))) == len(blocks)
             and all(isinstance(b, str) and b in BLOCKS and (has_test or "test" not in BLOCKS[b][:2]) for b in blocks),
             f"a list of distinct blocks from {', '.join(BLOCKS)} with train_train (test blocks need test images)"),
        want("versions", isinstance(m.get("versions", {}), dict), "an object"),
    ]
    return next((c for c in checks if c), None)
