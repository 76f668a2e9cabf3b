# Two commands for a new user: `make run` and `make test`. Only python3 is needed beforehand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: run serve test install migrate demo bench bench-delivery bench-provider bench-api bench-isolation \
	bench-plots bench-console bench-webhooks bench-retention chaos lint clean screenshots

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# SECRET_KEY has no default (project/settings.py): without one set, a random key is made once
# for this checkout, readable by its owner only.
var/secret_key:
	@mkdir -p var
	@umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	@echo "generated a random SECRET_KEY into $@ (used while SECRET_KEY is not set)"

install: $(STAMP) var/secret_key

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py seed_demo

run: demo
	$(PY) manage.py run_platform

# As it runs in production: deploy/Procfile (migrate, gunicorn, one qcluster per lane), DEBUG off,
# on 127.0.0.1:$(PORT) (8000). Same database and outbox as `make run`.
serve: demo
	DEBUG=false BIND=127.0.0.1 $(PY) manage.py run_platform --procfile deploy/Procfile

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The benchmarks; each prints its figures beside the alternative and exits non-zero on a missed goal.
bench: bench-delivery bench-provider bench-api bench-isolation bench-console bench-webhooks \
	bench-retention

bench-delivery: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/delivery.py $(BENCH_ARGS)

bench-api: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/api.py $(BENCH_API_ARGS)

# ruff, then mypy with the Django and DRF plugins (config in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf var/ .pytest_cache

# Delivery through Anymail's Postmark backend to a fake Postmark at 20, 100 and 400 ms per call,
# ours against django-post-office; exits non-zero on a missed goal.
bench-provider: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/provider.py $(BENCH_PROVIDER_ARGS)

# Transactional latency through the API while a 20,000-newsletter burst drains, both lanes' real
# clusters, fake Postmark at 50 ms; exits non-zero on a missed goal.
bench-isolation: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/isolation.py $(BENCH_ISOLATION_ARGS)

# The operator console's pages (dashboard, Message and dead-letter changelists) with 1,000,000
# messages on PostgreSQL: p50/p95 per page beside the 300 ms goal; exits non-zero on a miss.
bench-console: install
	$(PY) bench/console.py $(BENCH_CONSOLE_ARGS)

# What the tracking-webhook receiver adds to Anymail's view, per event (PostgreSQL).
bench-webhooks: install
	$(PY) bench/webhooks.py $(BENCH_WEBHOOKS_ARGS)

# Delivery's rate while retention deletes 1,000,000 old rows, against alone (goal: within 10%).
bench-retention: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/retention.py $(BENCH_RETENTION_ARGS)

# docs/img/*.png from the newest bench/results of bench-provider and bench-isolation.
bench-plots: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/plots.py

# Proof under faults: 5,000 messages through real clusters to a fake Postmark failing at known rates
# (503, 429, accepted-then-timeout, resets, slow, refused addresses), workers SIGKILLed and Redis
# restarted mid-run; audits every message against the provider's log, exits non-zero on a failed
# check (tests/chaos.py; a 400-message version runs in `make test`).
chaos: install
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) bench/chaos.py $(CHAOS_ARGS)

# docs/screenshots/*.png: the operator console at 1280x800, from a throwaway SQLite database with
# demo data, photographed by Debian's Chromium (apt-get install chromium); the pages are the SHOTS
# list in tests/browser/screenshots.py.
screenshots: install
	$(PY) -m tests.browser.screenshots $(SCREENSHOTS_ARGS)
