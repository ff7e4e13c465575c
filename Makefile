# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, build the index of seeds/, serve the app at http://127.0.0.1:7860
#   make test   create .venv, install (with test tools, Chromium and strace), run the tests
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test venv dev index eval demo clean

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: the CPU build on disk, not a multi-GB CUDA one
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

.venv/.dev-installed: .venv/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: .venv/.installed

dev: .venv/.dev-installed
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "warning: could not install chromium; the browser test will be skipped"; }
	@command -v strace >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null) || \
	  echo "warning: could not install strace; the outbound-traffic test will be skipped"; }

index: venv
	$(PY) -m qa index --corpus seeds --index index

# ui.py builds or updates the index of seeds/ (at index/) itself before it serves
run: venv
	$(PY) ui.py --corpus seeds --index index

eval: index
	$(PY) -m qa eval ../shared/eval/seed_questions.jsonl

test: dev
	$(PY) -m pytest -q

clean:
	rm -rf index .index.* .pytest_cache
