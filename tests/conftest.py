import os
import sys

# the shared helpers are imported as `support.<module>` from any test folder
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _builtin_rules():
    from ntkc.rules import loader, registry

    registry._load_builtins()
    return dict(registry._RULES), dict(loader._LOADED)


@pytest.fixture(autouse=True)
def _isolated_rule_registry(_builtin_rules):
    """Rules that a test (or a module fixture) registers, user modules and test rules, do not
    leak into later tests: after each test the rule table and the loader's module cache are
    back to the built-ins."""
    from ntkc.rules import loader, registry

    yield
    rules, loaded = _builtin_rules
    registry._RULES.clear()
    registry._RULES.update(rules)
    loader._LOADED.clear()
    loader._LOADED.update(loaded)
