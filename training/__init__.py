"""Pure compute and data for pipeline training: model and presets, stage split, stage engine,
determinism, offline corpus and schedule (`training.data`), evaluation, a local reference trainer.

Importing the package does no work; corpora and tokenizers are built on first use.
"""
