"""Framework-neutral pieces every wordrnn implementation shares.

Nothing in this package imports torch or jax: configuration, command-line
flags, the canonical initializer, run folders, the sampler, evaluation
metrics and the one training loop all live here.
"""
