"""Cross-framework parity tests (GitHub issue 6; fixed dropout masks, issue 9)."""
