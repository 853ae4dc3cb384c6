"""The two wordrnn models in PyTorch.

``model``: ``OneHotRNN`` / ``EmbeddingRNN`` on ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``, ``build_module`` and
``to_canonical`` (canonical weights in both directions); ``backend``: the
``TorchBackend`` the one training loop drives; ``train``: the command line.
"""
