"""Serving: batch prediction, ONNX export and inference, and the HTTP server.

- ``batch.predict_file``: streamed, resumable scoring of jsonl / csv / parquet (``guardmatch predict``).
- ``backends.load_classifier``: a model directory -> ``GuardClassifier`` or ``onnx.OnnxClassifier``.
- ``onnx.export_onnx`` / ``onnx.OnnxClassifier``: ``guardmatch export onnx`` and onnxruntime inference
  (extra ``onnx``).
- ``app.create_app`` / ``app.serve``: the FastAPI server with micro-batching (``batcher``), OpenAI-compatible
  ``/v1/moderations``, ``/v1/classify``, ``/healthz`` and Prometheus ``/metrics`` (extra ``serve``).

Calibration (temperature, thresholds) lives in ``guardmatch.calibration``.
"""
