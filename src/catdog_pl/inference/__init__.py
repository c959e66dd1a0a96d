"""Using a trained model: checkpoints read as data, :class:`~catdog_pl.inference.predictor.Predictor`, the
prediction CSV, the model card, the PyTorch and onnxruntime runners, and ONNX export. Never imports ``training``;
``card`` and ``onnx`` import no torch, so the ONNX server runs without it.
"""
