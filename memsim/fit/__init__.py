"""Fitting: targets and comparisons, calibration, parameter recovery, the compatibility analysis."""
