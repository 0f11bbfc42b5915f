# One image for every Sluiceway service (capture, process, sink, serve); docker-compose.yml
# and deploy/k8s pick the command. The servers (Kafka, PostgreSQL, S3) come from their own
# images. The image installs the wheel, as a user's `pip install` would: nothing is read
# from a checkout at run time.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY sluiceway ./sluiceway
COPY producers ./producers
COPY processors ./processors
COPY sinks ./sinks
COPY schemas ./schemas
COPY deploy ./deploy
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

RUN useradd --create-home --uid 10001 sluiceway
USER sluiceway
WORKDIR /home/sluiceway
# Run logs and pid files; deployments point it at a writable volume.
ENV SLUICEWAY_HOME=/home/sluiceway/.sluiceway

ENTRYPOINT ["sluiceway"]
CMD ["--help"]
