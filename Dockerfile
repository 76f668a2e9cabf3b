# The platform's image: one image, one process per container (web, each lane, the release step).
# Build: docker build -t notify .   Run: deploy/compose.yaml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VAR_DIR=/var/lib/notify \
    LOG_FORMAT=json

WORKDIR /app
RUN useradd --system --create-home --home-dir /var/lib/notify notify
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY manage.py ./
COPY project project
COPY notifications notifications
COPY templates_app templates_app
COPY dlq dlq

USER notify
EXPOSE 8000
# Overridden per service in compose.yaml (the lanes run `python manage.py qcluster`).
CMD ["gunicorn", "project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
