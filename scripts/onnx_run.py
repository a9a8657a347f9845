#!/usr/bin/env python3
"""Runs an ONNX model that `audionas export` wrote, with onnxruntime.

    onnx_run.py MODEL.onnx FEATURES.f32 LOGITS.f32

FEATURES.f32 holds little-endian float32 features, [batch] + the model's
"feature_shape" metadata, row-major; the logits are written the same way,
[batch, classes]. The model's metadata goes to stdout as one JSON object.
With --check, the onnx package first checks the file against the standard
(with shape inference).
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    args = sys.argv[1:]
    if args[0] == "--check":
        import onnx

        args = args[1:]
        onnx.checker.check_model(onnx.load(args[0]), full_check=True)
    model, features, logits = args
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    shape = json.loads(meta["feature_shape"])
    x = np.fromfile(features, dtype="<f4").reshape([-1] + shape)
    (y,) = session.run(["logits"], {"features": x})
    y.astype("<f4").tofile(logits)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
