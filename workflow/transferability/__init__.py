"""Transferability estimation: data, models, training, metrics and analysis.

Usable without Snakemake; the workflow's rule scripts are thin wrappers around this package.
"""

__version__ = "0.1.0"
