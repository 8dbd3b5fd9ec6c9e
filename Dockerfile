# Staging image: the service plus its test suites, so `exec app pytest tests/integration/` works.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt requirements-dev.txt ./
RUN pip install --no-cache-dir -r requirements-dev.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENV PYTHONUNBUFFERED=1 LOG_FORMAT=json
EXPOSE 8000
CMD ["gatekey", "serve", "--host", "0.0.0.0", "--port", "8000"]
