"""The base layer: pieces every other part of wordrnn imports.

Nothing here imports torch, jax or any other package of this project
(``data`` included), so everything may depend on it.
"""
