"""Batch inference on a Ray cluster (``portanet infer --engine ray``); needs the ``[ray]`` extra.

- :func:`infer_ray`: files (Parquet, CSV, JSONL; local or any pyarrow URI) in, a folder of
  predictions out, on a local or remote cluster.
- :func:`predict_dataset`: a ``ray.data.Dataset`` in, one with predictions out, for your own
  Ray pipelines.

Importing this package does not import Ray; calling these functions does.
"""

from portanet.scale.engine import RayInferResult, infer_ray
from portanet.scale.predictor import Predictor, Workers, predict_dataset

__all__ = ["Predictor", "RayInferResult", "Workers", "infer_ray", "predict_dataset"]
