"""The sizes the engine works in (no torch needed to read them, e.g. for command-line help)."""

# Images per tile side, in memory and in a Gram store alike (a store of the same tile size and
# pair batch is bitwise the in-memory result): 32k pairs per off-diagonal tile; variance maps are
# held per tile, within a quarter of the memory budget.
TILE = 256
DEFAULT_MEMORY = 2 << 30  # bytes of working memory for pair batches
