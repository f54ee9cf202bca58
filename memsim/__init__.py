"""memsim: simulate, score and analyse memorability annotation studies.

Importing the package is cheap: it loads neither numba kernels, torch nor
matplotlib. Import the stage modules (``memsim.design.protocol``, ``memsim.analysis.scoring``,
...) for the work itself.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
