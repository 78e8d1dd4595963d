"""Small facts and helpers that several layers share, each stated once: the precisions ntkc
computes in (`precision`), the one atomic file writer (`atomic`) and the library versions that
stores and caches record (`versions`)."""
