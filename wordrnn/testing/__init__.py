"""Libraries for checking the implementations against each other (used by ``tests/`` and by ``wordrnn.bench``).

Unlike ``wordrnn.core`` and ``wordrnn.run``, modules here import the frameworks they compare.
"""
