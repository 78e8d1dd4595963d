"""The `.arch` language: grammar, parsing, the validated layer list, checks and errors."""
from .network import Layer, Network, build, load
from .syntax import parse

__all__ = ["Layer", "Network", "build", "load", "parse"]
