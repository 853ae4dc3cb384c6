"""The two wordrnn models in PyTorch.

``model``: ``OneHotRNN`` / ``EmbeddingRNN`` on ``torch.nn.RNN``, ``build_model`` and
``to_canonical`` (canonical weights in both directions); ``backend``: the
``TorchBackend`` the one training loop drives; ``train``: the command line.
"""
