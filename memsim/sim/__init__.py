"""Simulation: population parameters, random streams, sequences, the numba kernels, the simpy
campaign."""
