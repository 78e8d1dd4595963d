"""The sizes the engine works in (no torch needed to read them, e.g. for command-line help)."""

# Images per tile side, in memory and in a Gram store alike (a store of the same tile size and
# pair batch is bitwise the in-memory result): 32k pairs per off-diagonal tile; variance maps are
# held per tile, within a quarter of the memory budget.
TILE = 256
DEFAULT_MEMORY = 2 << 30  # bytes of working memory for pair batches

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def memory_bytes(value) -> int:
    """A working-memory budget as bytes: an int, or a size such as "512M", "4G", "1.5g"; None is
    the default. ValueError (with what was wrong) for anything else, zero, or a size too large
    to mean anything."""
    if value is None:
        return DEFAULT_MEMORY
    if isinstance(value, bool):
        raise ValueError(f"a memory size is a number of bytes or a size like 4G, got {value!r}")
    if isinstance(value, str):
        t = value.strip().lower().removesuffix("ib").removesuffix("b")
        unit = t[-1:] if t[-1:] in _UNITS else ""
        try:
            number = float(t[:-1] if unit else t)
        except ValueError:
            raise ValueError(f"{value!r} is not a size; write e.g. 512M or 4G") from None
        amount = number * _UNITS[unit]
    elif isinstance(value, (int, float)) or hasattr(value, "__index__"):
        amount = float(value)
    else:
        raise ValueError(f"a memory size is a number of bytes or a size like 4G, got {type(value).__name__}")
    if not amount >= 1 or amount > MAX_MEMORY:
        raise ValueError(f"a memory size must be between 1 byte and {format_bytes(MAX_MEMORY)}, got {value!r}")
    return int(amount)


MAX_MEMORY = 1 << 60  # an exabyte: a budget beyond it is a typo (or 1e999G)


def tile_size(value) -> int:
    """Images per tile side, checked: a positive integer (ValueError otherwise)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"the tile size must be a positive integer, got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"the tile size must be a positive integer, got {value}")
    return value


def format_bytes(n: float) -> str:
    """'1.5 GiB'-style text for a byte count."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"
