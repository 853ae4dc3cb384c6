"""Above ``data``: the one training loop, run folders and the text side of generation."""
