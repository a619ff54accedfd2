"""Turn a verified model package into other deployable forms: an fp16 package (`fp16`) and a
Triton Inference Server model repository (`triton`). The server never imports this room; the
fp16 converter (onnx, onnxconverter-common) is the [export] extra, loaded only when used."""
