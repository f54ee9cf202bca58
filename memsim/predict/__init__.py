"""Predictors trained on the real releases (torch, optional extra)."""
