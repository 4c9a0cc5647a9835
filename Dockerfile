# The QTC worker and API image used by docker-compose.temporal.yml (one image, two commands).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
# The product only: the sandbox (emulators, local stack, demo) stays out of the image.
COPY qtc ./qtc
COPY workflows ./workflows
COPY integrations ./integrations
COPY runtime ./runtime
COPY service ./service
COPY workers ./workers
COPY starters ./starters
COPY catalog.toml ./
RUN pip install . && useradd --create-home qtc
USER qtc
ENV QTC_CATALOG=/app/catalog.toml
CMD ["qtc", "worker"]
