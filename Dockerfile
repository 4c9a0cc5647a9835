# The QTC worker and API image used by docker-compose.temporal.yml (one image, two commands).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY qtc ./qtc
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY starters ./starters
COPY sandbox ./sandbox
COPY catalog.toml ./
RUN pip install . && useradd --create-home qtc
USER qtc
ENV QTC_CATALOG=/app/catalog.toml
CMD ["qtc", "worker"]
