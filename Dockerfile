# Edge inference server: ONNX Runtime on CUDA 13 + cuDNN 9, CPU fallback without a GPU.
# Base package only (no torch): the server never needs the training stack.
#
#   docker build -t inspector .
#   docker run -p 8000:8000 -v inspector-data:/data -v "$PWD/models:/models" inspector
#
# The image ships no model: a plant's parts need the plant's model, and a stand-in would judge
# real parts. Put packages in the /models volume (models/<name>/<version>/) or upload one with
# an admin key (POST /v1/models); until one is loaded, /readyz answers 503 and the container
# reports unhealthy. docker-compose.yml adds PostgreSQL and Mosquitto (README: Container).
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

# Same install steps as .ci/run (a fresh venv, then pip install of this project), without the
# [train,dev] extras; with [connect], the line adapters (hot folder, OPC UA server) an edge
# box runs beside the server.
WORKDIR /app
COPY pyproject.toml README.md ./
COPY inspector ./inspector
COPY training ./training
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --upgrade pip \
    && /opt/venv/bin/pip install ".[connect]"
ENV PATH=/opt/venv/bin:$PATH

# A non-root user that owns both volumes: records and evidence in /data, model packages in
# /models (uploads and deploys write there).
RUN useradd --system --uid 10001 --home-dir /data --no-create-home inspector \
    && mkdir -p /data /models \
    && chown inspector:inspector /data /models
COPY --chown=inspector:inspector models/README.md /models/README.md
VOLUME ["/data", "/models"]
USER inspector

EXPOSE 8000
# Healthy means ready to judge frames: a model loaded and the database reachable.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/readyz >/dev/null || exit 1
ENTRYPOINT ["inspector", "serve", "--host", "0.0.0.0", "--port", "8000"]
