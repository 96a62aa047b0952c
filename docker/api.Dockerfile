# The API and the dashboard: no torch in this image (the API, backend.api, never imports it).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY idlab ./idlab
COPY backend ./backend
COPY worker ./worker
COPY frontend ./frontend
RUN pip install --no-cache-dir ".[server]"
ENV IDLAB_DATA_DIR=/data
EXPOSE 8000
# Migrations run in the app's start-up (backend.api.app's lifespan), before it serves.
CMD ["uvicorn", "backend.api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
