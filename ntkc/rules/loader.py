"""Loading a user's rule module: a `.py` file or an importable dotted module name.

Importing the module runs its `@register` decorators, which add its rules to the table. A module
is loaded once per process (by resolved path or module name), so a `.arch` file that says
`use "my_rules.py"` can be compiled any number of times, and `ntkc.load_rules` and a `use` line
naming the same file do not collide.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from ..errors import RuleError

_LOADED: dict[str, ModuleType] = {}


def is_path(spec: str) -> bool:
    """A `use` target is a file path when it ends in .py or contains a path separator."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def load_rules(spec: "str | Path", base_dir: "str | Path | None" = None) -> ModuleType:
    """Import a rule module and return it; its `@register`ed rules are then known by name.

    `spec` is a path to a `.py` file (relative paths are taken from `base_dir`, default the
    current directory) or a dotted module name on `sys.path`. Raises `RuleError` when the file
    does not exist or the module fails to import (the message carries the error and where in the
    module it happened).
    """
    from .registry import _load_builtins

    _load_builtins()  # built-ins first, so a user module cannot shadow them by accident
    text = str(spec)
    if not text.strip() or any(ord(c) < 32 for c in text):
        raise RuleError(f"rule module {text!r} is not a usable name: it is empty or holds control characters",
                        hint='write use "my_rules.py" or use "package.module"')
    if isinstance(spec, Path) or is_path(text):
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path(base_dir or ".") / path
        path = path.resolve()
        key = f"file:{path}"
        if key in _LOADED:
            return _LOADED[key]
        if not path.is_file():
            where = "" if Path(text).is_absolute() else f" in {str(Path(base_dir or '.'))!r}"
            raise RuleError(f"rule module {text!r} not found{where}",
                            hint="give a path to a .py file relative to the .arch file, or a dotted module name")
        if path.suffix != ".py":
            raise RuleError(f"rule module {text!r} is not a .py file",
                            hint='a `use` line names a Python file ending in .py, or a dotted module name')
        name = f"ntkc_user_rules_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise RuleError(f"rule module {text!r} cannot be imported as Python")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except RuleError:
            sys.modules.pop(name, None)
            raise
        except Exception as err:
            sys.modules.pop(name, None)
            raise RuleError(f"rule module {text!r} failed to import: {_describe(err, str(path))}",
                            hint="fix the module; it must import with `python " + str(path) + "` alone") from None
    else:
        key = f"module:{text}"
        if key in _LOADED:
            return _LOADED[key]
        if not all(part.isidentifier() for part in text.split(".")):
            raise RuleError(f"{text!r} is neither a .py path nor a dotted module name",
                            hint='write use "my_rules.py" or use "package.module"')
        try:
            module = importlib.import_module(text)
        except RuleError:
            raise
        except ModuleNotFoundError as err:
            if err.name and text.startswith(err.name):
                raise RuleError(f"rule module {text!r} not found", hint="check the name, or that its folder is on "
                                "sys.path / PYTHONPATH; a file is written with .py: use \"my_rules.py\"") from None
            raise RuleError(f"rule module {text!r} failed to import: {_describe(err, None)}") from None
        except Exception as err:
            raise RuleError(f"rule module {text!r} failed to import: {_describe(err, None)}") from None
    _LOADED[key] = module
    return module


def _describe(err: Exception, path: str | None) -> str:
    """`Type: message (file:line)`, at the deepest frame inside the user's module if found."""
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if path is None or f.filename == path] or frames
    where = f" ({mine[-1].filename}:{mine[-1].lineno})" if mine else ""
    if isinstance(err, SyntaxError) and err.lineno:
        where = f" ({err.filename}:{err.lineno})"
    return f"{type(err).__name__}: {err}{where}"
