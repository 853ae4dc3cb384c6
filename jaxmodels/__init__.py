"""The wordrnn models in JAX/Flax NNX: the recurrence is a ``jax.lax.scan``.

``model`` holds the math and the canonical weights, ``backend`` the optimizer and
the jitted data-parallel training step, ``devices`` the choice of accelerator,
mesh and multi-host start, ``train`` the command line. Never imports torch.
"""
