"""codepolicy: train language models to write game strategies as code.

The work lives in the top-level packages ``envs``, ``sandbox``, ``rewards`` and ``train``;
this package holds the ``codepolicy`` command line that fronts them, and
:mod:`codepolicy.tomlconfig`, the TOML reader/checker/writer that ``rewards`` (RewardSpec) and
``train`` (TrainConfig) share. This file imports nothing, so any layer may import that module
(it uses the standard library only) without loading the command line.
"""
__version__ = "0.1.0"
