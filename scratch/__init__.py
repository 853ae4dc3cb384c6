"""The NumPy reference: forward pass and hand-written BPTT of every cell, optimizers, gradient check.

Imports NumPy, ``wordrnn`` and ``data`` only. Every other implementation is
checked against this one, so it favours plain, readable math (the equations
are in the comments) while staying fast enough to train the benchmark
configuration on a laptop.
"""
