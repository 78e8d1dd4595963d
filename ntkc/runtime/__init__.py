"""The runtime: executing Plans (backends), tiling over pairs, data and regression."""
