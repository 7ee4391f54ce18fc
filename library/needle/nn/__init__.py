"""Layers (placeholder)."""
