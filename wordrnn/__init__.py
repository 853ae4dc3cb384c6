"""wordrnn's own shared code, in three layers that import downwards only.

- ``wordrnn.core``: the base. Errors, configuration, the cell and parameter
  schema, flags, metrics, the backend protocol. Imports no other package of
  the project, so ``data`` may import it.
- ``data`` (a top-level package): text to token ids; imports ``wordrnn.core``.
- ``wordrnn.run``: above ``data``. The one training loop, run folders, the
  text side of generation.
- ``scratch``, ``torchmodels``, ``jaxmodels``, ``export``: the implementations.
- ``wordrnn.bench``: the reports and benchmarks, on top of everything.
"""
