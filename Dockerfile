# prunescape: API + dashboard, and the Celery worker (same image, different command).
# GPU workers: build FROM an image with the CUDA runtime your torch wheel needs, or install the
# CUDA-enabled torch wheel here; the NVIDIA container toolkit exposes the GPU (see docs/team-mode.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PRUNESCAPE_DATA_DIR=/data \
    PRUNESCAPE_ARTIFACT_DIR=/artifacts

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY backend ./backend
COPY frontend ./frontend
COPY workers ./workers
COPY migrations ./migrations
RUN pip install .

RUN useradd --create-home --uid 1000 prunescape \
    && mkdir -p /data /artifacts && chown prunescape /data /artifacts
USER prunescape
EXPOSE 8000
CMD ["prunescape", "serve", "--host", "0.0.0.0", "--port", "8000"]
