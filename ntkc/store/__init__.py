"""The Gram store: kernel matrices computed into a folder of checksummed tiles that survive any
interruption. `gramstore` is the folder format (manifest, tiles, assembled matrices, checks),
`work` the unit of work (a run of tiles on one row), `local` and `ray_runner` the two ways to run
units (this process, or Ray tasks), `job` opens or resumes a store and fills it."""
from .gramstore import GramStore, StoreError

__all__ = ["GramStore", "StoreError"]
