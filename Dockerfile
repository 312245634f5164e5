# One image for every ragcord service (rpc, worker, bot); the command picks the role.
FROM python:3.11-slim AS build
WORKDIR /app
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH
COPY requirements.lock pyproject.toml README.md ./
# torch first and pinned: unpinned, sentence-transformers pulls a multi-GB CUDA build.
# Point TORCH_INDEX_URL at PyTorch's CPU wheel index to keep the image small.
ARG TORCH_INDEX_URL=""
RUN pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && pip install --no-cache-dir -r requirements.lock
COPY ragcord ragcord
COPY rpc rpc
COPY workers workers
COPY bot bot
RUN pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ragcord
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH HF_HUB_OFFLINE=1 RAGCORD_DATA_DIR=/data
RUN mkdir /data && chown ragcord /data
USER ragcord
WORKDIR /home/ragcord
ENTRYPOINT ["ragcord"]
CMD ["serve"]
