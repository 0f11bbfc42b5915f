# One image for every Sluiceway service (capture, process, sink, serve); docker-compose.yml
# picks the command. The servers (Kafka, PostgreSQL, S3) come from their official images.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
COPY sluiceway ./sluiceway
COPY producers ./producers
COPY processors ./processors
COPY sinks ./sinks
RUN pip install .

# Runtime data read from the checkout (schemas/, deploy/).
COPY schemas ./schemas
COPY deploy ./deploy

RUN useradd --create-home --uid 10001 sluiceway
USER sluiceway

ENTRYPOINT ["sluiceway"]
CMD ["--help"]
