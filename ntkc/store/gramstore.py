"""A Gram store: the kernel blocks of one computation on disk, in tiles that survive crashes.

Layout of a store folder:

    manifest.json            what is computed: architecture (source and hash), dataset (hashes),
                             sizes, precision, backend, tile size, pair batch, library versions
    labels.npz               y_train, y_test, so that a store alone is enough to regress
    tiles/<block>/IIIII_JJJJJ.<checksum>.npy
                             one tile: an array [2, rows, cols] (NNGP, NTK) of rows
                             I*tile.. and columns J*tile.. of the block; the checksum in the
                             name is blake2b-128, keyed with the store's binding (its id and
                             what decides the bits, `manifest.binding`), of the tile's block
                             and position and the file's bytes
    .lock                    held (flock) by the process filling the store
    <block>.nngp.npy, <block>.ntk.npy
                             the assembled matrices, written once every tile is present and
                             read back memory-mapped

Blocks are `train_train` (symmetric: only tiles on and above the diagonal are computed),
`test_train` and optionally `test_test` (symmetric). Every file is written to a temporary
name, flushed, fsynced and renamed, so a reader sees a whole tile or none; a tile whose bytes do
not match its checksum (corrupt, truncated, moved, or copied from another store), or whose shape
is wrong, is deleted and computed again. One process fills a store at a time: `lock()` makes a
second one wait for the first, then find its tiles done.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

try:
    import fcntl
except ImportError:  # not POSIX: no lock (two processes on one store then duplicate work)
    fcntl = None

import numpy as np

from ..util.atomic import write_bytes as write_atomic
from .manifest import (BLOCKS, MATCH_KEYS, StoreError, array_digest, binding, check,  # noqa: F401 (re-exported)
                       get as _get, make_manifest)

_TILE_NAME = re.compile(r"^(\d{5})_(\d{5})\.([0-9a-f]{32})\.npy$")
STALE_TEMPORARY_SECONDS = 600.0  # a temporary file this old belongs to no live writer
LOCK_NAME = ".lock"


def digest(data: bytes, key: bytes = b"", where: str = "") -> str:
    """blake2b-128 of `where` (a tile's block and position) and `data`, keyed with `key`."""
    h = hashlib.blake2b(digest_size=16, key=key[:64])
    h.update(where.encode() + b"\0")
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class Tile:
    block: str
    i: int
    j: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def diagonal(self) -> bool:
        return BLOCKS[self.block][2] and self.i == self.j

    @property
    def pairs(self) -> int:
        r = self.r1 - self.r0
        return r * (r + 1) // 2 if self.diagonal else r * (self.c1 - self.c0)

    def __str__(self) -> str:
        return f"{self.block} tile ({self.i}, {self.j})"


class GramStore:
    """A store folder. `create_or_resume` for computing, `open` for reading back."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        self.binding = binding(manifest)
        self.tile = int(manifest["tile"])
        self.dtype = np.dtype(manifest["dtype"])
        self.sizes = {"train": manifest["data"]["train"]["n"], "test": manifest["data"]["test"]["n"]}
        self.blocks = tuple(manifest["blocks"])
        self.warnings: list[str] = []
        self.repaired: list[str] = []
        self.last_run: dict = {}  # counts of the last `store.job.fill` on this store

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create_or_resume(cls, root: str | Path, manifest: dict, labels: dict | None = None) -> "GramStore":
        """Start a store in an empty (or new) folder, or resume one made for the same computation.

        A store made for another architecture, dataset, precision, backend or tile size is
        refused: its tiles would not fit this computation. A folder that cannot be written
        (a full disk, no permission) is a StoreError too.
        """
        try:
            return cls._create_or_resume(Path(root), manifest, labels)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(f"the disk holding {root} is full: the store's manifest could not be written",
                                 hint="free some space, or give --store a folder on another disk") from None
            raise StoreError(f"cannot use {root} as a Gram store: {err.strerror or err}",
                             hint="check that the folder can be created and written") from None

    @classmethod
    def _create_or_resume(cls, root: Path, manifest: dict, labels: dict | None) -> "GramStore":
        path = root / "manifest.json"
        if path.exists():
            old = cls._read_manifest(root)
            problems = []
            for what, key in MATCH_KEYS:
                a, b = _get(old, key), _get(manifest, key)
                if a != b:
                    problems.append(f"{what}: the store has {_short(a)}, this command {_short(b)}")
            if problems:
                raise StoreError(
                    f"the store {root} was made for a different computation, so its tiles cannot be reused:\n  "
                    + "\n  ".join(problems),
                    hint="use another --store folder, or delete this one to start over "
                         f"(it was made for {old['arch']['file']})",
                )
            store = cls(root, old)
            for b in manifest["blocks"]:
                if b not in store.blocks:  # asking for more blocks than before: add them
                    store.blocks += (b,)
            if store.blocks != tuple(old["blocks"]):
                old["blocks"] = list(store.blocks)
                write_atomic(path, json.dumps(old, indent=2).encode())
            changed = {k: (v, manifest["versions"].get(k)) for k, v in old.get("versions", {}).items()
                       if manifest["versions"].get(k) != v}
            if changed:
                store.warnings.append(
                    "library versions differ from those that started this store ("
                    + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
                    + "); tiles computed now may differ from the earlier ones in the last bits")
        else:
            if root.exists() and not root.is_dir():
                raise StoreError(f"{root} exists and is not a folder", hint="give --store a folder path")
            if root.exists() and any(p.name != LOCK_NAME for p in root.iterdir()):
                raise StoreError(f"{root} is not empty and holds no manifest.json: it is not a Gram store",
                                 hint="give --store a new or empty folder")
            root.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(manifest, indent=2).encode())
            store = cls(root, manifest)
        if labels is not None and not (root / "labels.npz").exists():
            buf = io.BytesIO()
            np.savez(buf, **labels)
            write_atomic(root / "labels.npz", buf.getvalue())
        store.clean_temporaries()
        return store

    @classmethod
    def open(cls, root: str | Path) -> "GramStore":
        """Open an existing store to read it (by a worker, or to read the matrices back)."""
        root = Path(root)
        return cls(root, cls._read_manifest(root))

    @staticmethod
    def _read_manifest(root: Path) -> dict:
        path = root / "manifest.json"
        try:
            m = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"{root} is not a Gram store: it has no manifest.json",
                             hint="compute one with `ntkc gram FILE.arch ... --store DIR`") from None
        except (OSError, ValueError) as err:
            raise StoreError(f"{path} cannot be read ({err})",
                             hint="the manifest is written atomically, so this folder was changed by hand; "
                                  "move it away and start a new store") from None
        return check(m, str(path))

    @contextlib.contextmanager
    def lock(self, note: Callable[[str], None] | None = None):
        """Hold the store's lock while filling it: a second process (or call) on the same
        folder waits here, saying so through `note`, and then finds the first one's tiles done,
        so no tile is computed twice. The lock is the kernel's (flock), released when the
        holder exits however it exits (kill -9 included)."""
        path = self.root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot open the lock file {path}: {err.strerror or err}") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                    if note is not None:
                        note(f"the store {self.root} is being filled by {holder}; waiting for it to finish")
                    fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
            yield self
        finally:
            os.close(fd)  # releases the lock

    def on_disk_id(self) -> str | None:
        """The store_id of the manifest now on disk (another process may have replaced it)."""
        try:
            return self._read_manifest(self.root).get("store_id")
        except StoreError:
            return None

    def clean_temporaries(self) -> None:
        """Remove temporary files left by writers that died (old enough to belong to no one)."""
        now = time.time()
        for tmp in self.root.rglob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_TEMPORARY_SECONDS:
                    tmp.unlink()
            except FileNotFoundError:
                pass

    # -- geometry ------------------------------------------------------------------------------

    def shape(self, block: str) -> tuple[int, int]:
        rows, cols, _ = BLOCKS[block]
        return self.sizes[rows], self.sizes[cols]

    def tiles(self, block: str) -> list[Tile]:
        """The tiles of a block, row by row (upper triangle only for a symmetric block)."""
        n_r, n_c = self.shape(block)
        sym = BLOCKS[block][2]
        t = self.tile
        out = []
        for i in range(-(-n_r // t)):
            for j in range(i if sym else 0, -(-n_c // t)):
                out.append(Tile(block, i, j, i * t, min(n_r, (i + 1) * t), j * t, min(n_c, (j + 1) * t)))
        return out

    def all_tiles(self) -> list[Tile]:
        return [t for b in self.blocks for t in self.tiles(b)]

    # -- tiles ---------------------------------------------------------------------------------

    def _dir(self, block: str) -> Path:
        return self.root / "tiles" / block

    def _files(self, tile: Tile) -> list[Path]:
        d = self._dir(tile.block)
        if not d.is_dir():
            return []
        prefix = f"{tile.i:05d}_{tile.j:05d}."
        return sorted(p for p in d.iterdir() if p.name.startswith(prefix) and p.name.endswith(".npy"))

    def _expected_bytes(self, tile: Tile) -> int:
        return len(_npy_header(self.dtype, (2, tile.r1 - tile.r0, tile.c1 - tile.c0))) + \
            2 * (tile.r1 - tile.r0) * (tile.c1 - tile.c0) * self.dtype.itemsize

    def present(self) -> set[Tile]:
        """Tiles with a file of the right size (a cheap check; `read_tile` verifies checksums)."""
        have = set()
        for block in self.blocks:
            d = self._dir(block)
            names = {}
            if d.is_dir():
                for p in d.iterdir():
                    m = _TILE_NAME.match(p.name)
                    if m:
                        names.setdefault((int(m[1]), int(m[2])), []).append(p)
            for tile in self.tiles(block):
                for p in names.get((tile.i, tile.j), []):
                    try:
                        if p.stat().st_size == self._expected_bytes(tile):
                            have.add(tile)
                            break
                    except FileNotFoundError:
                        pass
        return have

    def missing(self) -> list[Tile]:
        have = self.present()
        return [t for t in self.all_tiles() if t not in have]

    def write_tile(self, tile: Tile, nngp: np.ndarray, ntk: np.ndarray) -> None:
        data = np.stack([np.asarray(nngp, dtype=self.dtype), np.asarray(ntk, dtype=self.dtype)])
        if data.shape != (2, tile.r1 - tile.r0, tile.c1 - tile.c0):
            raise StoreError(f"{tile}: got an array of shape {data.shape[1:]}, expected "
                             f"{(tile.r1 - tile.r0, tile.c1 - tile.c0)}")
        buf = io.BytesIO()
        np.save(buf, data, allow_pickle=False)
        raw = buf.getvalue()
        d = self._dir(tile.block)
        d.mkdir(parents=True, exist_ok=True)
        name = f"{tile.i:05d}_{tile.j:05d}.{self._digest(tile, raw)}.npy"
        try:
            write_atomic(d / name, raw)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                done = len(self.present())
                raise StoreError(
                    f"the disk holding {self.root} is full: {tile} could not be written; the {done} "
                    f"tiles already stored are safe",
                    hint="free some space (or move the store) and rerun the same command to finish",
                ) from None
            raise StoreError(f"cannot write {tile} to {d}: {err.strerror or err}") from None
        for other in self._files(tile):  # an older copy (e.g. from a retried task): keep one
            if other.name != name:
                other.unlink(missing_ok=True)

    def _digest(self, tile: Tile, raw: bytes) -> str:
        return digest(raw, self.binding, f"{tile.block}/{tile.i}/{tile.j}")

    def read_tile(self, tile: Tile) -> np.ndarray | None:
        """The tile's [2, rows, cols] array, or None when it is missing or was corrupt (a corrupt
        file is deleted and noted in `repaired`, so that it is computed again)."""
        for p in self._files(tile):
            m = _TILE_NAME.match(p.name)
            reason = None
            try:
                raw = p.read_bytes()
            except FileNotFoundError:
                continue
            if not m:
                reason = "an unexpected file name"
            elif self._digest(tile, raw) != m[3]:
                reason = ("its bytes do not match its checksum for this store and position (corrupt, truncated, "
                          "moved, or copied from another store)")
            else:
                try:
                    arr = np.load(io.BytesIO(raw), allow_pickle=False)
                except Exception as err:  # noqa: BLE001  (any unreadable file is a bad tile)
                    arr, reason = None, f"it cannot be read as an array ({err})"
                if arr is not None:
                    want = (2, tile.r1 - tile.r0, tile.c1 - tile.c0)
                    if arr.shape != want or arr.dtype != self.dtype:
                        reason = f"it holds {arr.dtype} {arr.shape}, expected {self.dtype} {want}"
                    else:
                        return arr
            self.repaired.append(f"{tile}: {p.name} was removed because {reason}; it will be computed again")
            p.unlink(missing_ok=True)
        return None

    # -- the assembled matrices ----------------------------------------------------------------

    def matrix_path(self, block: str, kernel: str) -> Path:
        return self.root / f"{block}.{kernel}.npy"

    def assemble(self) -> list[Tile]:
        """Write each block's two matrices from its tiles (tile by tile, memory-bounded).

        Returns the tiles that were missing or corrupt (then nothing is assembled for their
        block and they must be computed first)."""
        bad = []
        for block in self.blocks:
            if all(self.matrix_path(block, k).exists() for k in ("nngp", "ntk")):
                continue
            shape = self.shape(block)
            sym = BLOCKS[block][2]
            tmps = {k: self.root / f".{block}.{k}.{os.getpid()}.tmp.npy" for k in ("nngp", "ntk")}
            mats = {k: np.lib.format.open_memmap(p, mode="w+", dtype=self.dtype, shape=shape) for k, p in tmps.items()}
            block_bad = []
            try:
                for tile in self.tiles(block):
                    arr = self.read_tile(tile)
                    if arr is None:
                        block_bad.append(tile)
                        continue
                    for n, k in enumerate(("nngp", "ntk")):
                        mats[k][tile.r0:tile.r1, tile.c0:tile.c1] = arr[n]
                        if sym and not tile.diagonal:
                            mats[k][tile.c0:tile.c1, tile.r0:tile.r1] = arr[n].T
                for m in mats.values():
                    m.flush()
                del mats
                if block_bad:
                    bad += block_bad
                    continue
                for k, p in tmps.items():
                    with open(p, "rb+") as f:
                        os.fsync(f.fileno())
                    os.replace(p, self.matrix_path(block, k))
            except OSError as err:
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreError(f"the disk holding {self.root} is full while assembling {block}; "
                                     "every tile is stored and safe",
                                     hint="free some space and rerun the same command") from None
                raise
            finally:
                for p in tmps.values():
                    p.unlink(missing_ok=True)
        return bad

    def verify(self) -> list[str]:
        """Check every stored tile against its checksum and every assembled matrix against its
        tiles. Corrupt tiles are deleted (to be computed again) and the matrices of a block with
        any problem are deleted (to be assembled again). Returns what was found."""
        found = []
        for block in self.blocks:
            paths = [self.matrix_path(block, k) for k in ("nngp", "ntk")]
            mats = None
            if all(p.exists() for p in paths):
                try:
                    mats = [np.load(p, mmap_mode="r", allow_pickle=False) for p in paths]
                    if any(m.shape != self.shape(block) or m.dtype != self.dtype for m in mats):
                        raise ValueError("wrong shape or dtype")
                except (ValueError, OSError, EOFError) as err:
                    found.append(f"{block}: the assembled matrices cannot be read ({err})")
                    mats = None
            bad_block = mats is None and all(p.exists() for p in paths)
            for tile in self.tiles(block):
                before = len(self.repaired)
                arr = self.read_tile(tile)
                if len(self.repaired) > before:
                    found += self.repaired[before:]
                    bad_block = True
                elif arr is not None and mats is not None and not bad_block:
                    region = [m[tile.r0:tile.r1, tile.c0:tile.c1] for m in mats]
                    if not all(np.array_equal(r, a) for r, a in zip(region, arr)):
                        found.append(f"{block}: the assembled matrices differ from {tile}")
                        bad_block = True
            del mats
            if bad_block:
                for p in paths:
                    p.unlink(missing_ok=True)
        self.repaired.clear()
        return found

    def matrices(self, block: str) -> tuple[np.ndarray, np.ndarray]:
        """(NNGP, NTK) of a block, memory-mapped read-only."""
        if block not in self.blocks:
            raise StoreError(f"the store {self.root} has no block {block!r}", hint=f"it has {', '.join(self.blocks)}")
        paths = [self.matrix_path(block, k) for k in ("nngp", "ntk")]
        if not all(p.exists() for p in paths):
            raise StoreError(f"the store {self.root} is not complete: {block} is not assembled yet",
                             hint="rerun the `ntkc gram ... --store` command to finish it")
        out = []
        for p in paths:
            try:
                m = np.load(p, mmap_mode="r", allow_pickle=False)
                if m.shape != self.shape(block) or m.dtype != self.dtype:
                    raise ValueError(f"it holds {m.dtype} {m.shape}, expected {self.dtype} {self.shape(block)}")
            except (ValueError, OSError, EOFError) as err:
                raise StoreError(f"the assembled matrix {p} is damaged: {err}",
                                 hint="rerun the same command with --verify to check the tiles and assemble it "
                                      "again") from None
            out.append(m)
        return tuple(out)

    def labels(self) -> dict:
        try:
            with np.load(self.root / "labels.npz", allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except Exception as err:  # noqa: BLE001  (missing, truncated, not a zip, objects)
            raise StoreError(f"the labels of the store {self.root} cannot be read ({type(err).__name__}: {err})",
                             hint="labels.npz is written with the store; compute the store again") from None

    def status(self) -> str:
        tiles = self.all_tiles()
        have = self.present()
        pairs = sum(t.pairs for t in tiles)
        done = sum(t.pairs for t in tiles if t in have)
        return f"{len(have)} of {len(tiles)} tiles ({done} of {pairs} pairs)"


def _npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _short(v) -> str:
    if isinstance(v, str) and len(v) > 16 and re.fullmatch(r"[0-9a-f]+", v):
        return f"hash {v[:12]}"
    return repr(v)
