"""Cross-framework parity tests: every model and cell, fixed dropout masks, training trajectories."""
