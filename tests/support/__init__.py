"""Helpers shared by the tests (not test modules): the independent reference, tolerances and
comparisons, the networks used by several suites, the Gram-store fixtures and the Triton
interpreter workers. `tests/conftest.py` puts `tests/` on `sys.path`, so tests import
`support.<module>`."""
