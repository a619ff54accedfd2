# Edge inference server: ONNX Runtime on CUDA 13 + cuDNN 9, CPU fallback without a GPU.
# Base package only (no torch): the server never needs the training stack.
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    INSPECTOR_DATA_DIR=/data \
    INSPECTOR_MODELS_DIR=/models

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv curl \
    && rm -rf /var/lib/apt/lists/*

# Same install steps as .ci/run, without the [train,dev] extras.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY inspector ./inspector
COPY training ./training
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --upgrade pip \
    && /opt/venv/bin/pip install .
ENV PATH=/opt/venv/bin:$PATH

COPY models /models
RUN useradd --system --uid 10001 --home /data inspector \
    && mkdir -p /data \
    && chown -R inspector /data
USER inspector

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["inspector", "serve", "--host", "0.0.0.0", "--port", "8000"]
