"""The compiler: layer rules, lowering to a Plan, and code generation."""
from .plan import Plan, describe, lower

__all__ = ["Plan", "describe", "lower"]
