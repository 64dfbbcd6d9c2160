"""codepolicy: train language models to write game strategies as code.

The work lives in the top-level packages ``envs``, ``sandbox``, ``rewards`` and ``train``;
this package holds only the ``codepolicy`` command line that fronts them.
"""
__version__ = "0.1.0"
