"""ONNX export (``python -m export.onnx``) and generation with onnxruntime alone (``python -m export.generate``).

Importing the package imports nothing heavy: ``export.generate`` must run
where only onnxruntime and NumPy are installed.
"""
