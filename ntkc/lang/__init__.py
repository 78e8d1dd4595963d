"""The `.arch` language: the grammar (`arch.lark`), parsing into syntax records with source spans
(`syntax`), and the validated `Network` with rules looked up, parameters typed and shapes
checked (`network`). Every user mistake is an `ArchError` located at file:line:col."""
from .network import Layer, Network, build, load
from .syntax import parse

__all__ = ["Layer", "Network", "build", "load", "parse"]
