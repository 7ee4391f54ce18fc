"""Operators (filled by the ops work)."""
