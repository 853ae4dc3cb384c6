"""The two wordrnn models in PyTorch.

``model``: ``OneHotRNN`` / ``EmbeddingRNN`` on ``nn.RNN`` (tanh or ReLU), ``nn.LSTM`` or ``nn.GRU``, or the
cell step by step where torch has no layer (the minimal GRU), ``build_module`` and
``to_canonical`` (canonical weights in both directions); ``backend``: the
``TorchBackend`` the one training loop drives; ``train``: the command line.
"""
