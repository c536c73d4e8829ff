# GPU image of the voice worker: `docker build -t voice-agent .`
#   docker run --gpus all -v voice-cache:/data --env-file .env voice-agent
# CUDA 12 + cuDNN 9 is what the PyPI CTranslate2 (faster-whisper) and onnxruntime-gpu wheels
# load; the host needs an NVIDIA driver for CUDA 12 and the NVIDIA container toolkit.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent agent
COPY plugins plugins
COPY auth auth
COPY cache cache
# llama.cpp (the embedded default LLM) built for portable AVX2; production points
# LLM_BASE_URL at vLLM instead. onnxruntime-gpu replaces the CPU onnxruntime that
# piper-tts, silero and faster-whisper pull in (both provide the same module).
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir '.[llama,gpu,s3]' \
    && /opt/venv/bin/pip uninstall -y onnxruntime \
    && /opt/venv/bin/pip install --no-cache-dir --force-reinstall --no-deps 'onnxruntime-gpu>=1.18'

FROM ${CUDA_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 espeak-ng libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 agent \
    && mkdir /data && chown agent:agent /data
COPY --from=build /opt/venv /opt/venv
# MALLOC_ARENA_MAX=2: two glibc heaps for the engines' threads instead of 8 per core; the
# soak's plateau is ~20 MB lower with it (docs/reliability.md)
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CACHE_PATH=/data \
    WORKER_HTTP_PORT=8081 \
    DRAIN_TIMEOUT_S=300 \
    MALLOC_ARENA_MAX=2
USER agent
WORKDIR /home/agent
# model assets are fetched at build time into /data; a named volume mounted there is seeded
# with them on first use and keeps the clip cache across restarts
RUN python -m agent download-files
VOLUME ["/data"]
EXPOSE 8081
# the supervisor (Docker) must wait longer than DRAIN_TIMEOUT_S: docker stop -t 330
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8081/', timeout=4)" || exit 1
CMD ["python", "-m", "agent", "start"]
