"""gaitfidelity: the importable package behind the Snakemake workflow.

Each workflow stage has one module (or sub-package) here with the same name as its rule file in
``workflow/rules``; rules only call into this package.
"""

__version__ = "0.1.0"
