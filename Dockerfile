# One image for every ragcord service (rpc, worker, bot); the compose command picks the role.
# The local embedder (all-MiniLM-L6-v2, int8 ONNX on onnxruntime) is part of it: no torch, ~120 MB.
# Only the runtime lock goes in: no pytest, ruff, hypothesis, grpcio-tools or grpcurl in production.
FROM python:3.11-slim AS build
WORKDIR /app
RUN python -m venv /venv
ENV PATH=/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements/runtime.lock requirements/runtime.lock
# Like `make install`: exact versions, hash-checked, nothing resolved (--no-deps).
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY ragcord ragcord
COPY rpc rpc
COPY workers workers
COPY bot bot
COPY cli cli
# The build backend (setuptools, pyproject's build-system) is fetched into an isolated build environment.
RUN pip install --no-deps . && pip check
# Nothing installs at run time: pip and setuptools leave the venv, and so do the packages' own test suites
# (numpy's, mostly): 609 -> 568 MB measured (podman build; README, "Footprint").
RUN pip uninstall --yes --quiet pip setuptools \
    && find /venv/lib/python3.11/site-packages -depth -type d -name tests -exec rm -rf {} +

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ragcord && mkdir /data && chown ragcord /data
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH RAGCORD_DATA_DIR=/data PYTHONUNBUFFERED=1
USER ragcord
WORKDIR /home/ragcord
EXPOSE 50051
ENTRYPOINT ["ragcord"]
CMD ["serve"]
