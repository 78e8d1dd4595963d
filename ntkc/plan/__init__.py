"""(layout in progress)"""
from .lower import Plan, describe, lower

__all__ = ["Plan", "describe", "lower"]
