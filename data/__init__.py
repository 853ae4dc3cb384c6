"""Text to token ids: find the corpus, read it, tokenize, build the vocabulary,
split by poem, cut windows and shuffle batches. Imports neither torch nor jax."""
