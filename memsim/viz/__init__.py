"""Figures (matplotlib, imported only when drawing)."""
