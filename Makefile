# The two set-up commands are `make serve` and `make test`; everything else is a helper.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-stamp
HTTP_PORT ?= 3000
GRPC_PORT ?= 50051

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export BENTOML_DO_NOT_TRACK := True
export BENTOML_HOME ?= $(HOME)/.cache/fgrm-bentoml

.PHONY: install serve test chromium bench ppo-demo lint clean

$(STAMP): requirements.lock pyproject.toml clients/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps --no-build-isolation -e . -e clients
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/fgrm serve --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT)

test: install chromium
	$(PY) -m pytest -q tests

# The inspector's browser test (tests/service/test_inspector.py) drives Debian's chromium through
# Playwright; no browser is downloaded. As root (CI on a fresh machine) it is installed when
# missing; otherwise, or if apt cannot install it, that test is skipped and says why.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || [ "$$(id -u)" != 0 ] || { echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the inspector's browser test will be skipped"; }

# ruff over everything; mypy over service/ and models/ (pyproject.toml says what it checks and why).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# "Does it learn?" (clients/README.md): needs `make serve` running. SFT once (5 min), then one
# fine-grained PPO run with relevance weighted up (60 steps, ~3 min on a quiet CPU); curves in
# runs/ppo-demo/curves.png. Completeness at 3: with 1, the tiny policy learns to answer nothing
# within 40 steps (its every sentence is wrong, so silence pays; clients/README.md).
PPO_WEIGHTS ?= relevance=2,factuality=1,completeness=3
ppo-demo: install
	test -f runs/sft/config.json || $(PY) clients/ppo/sft.py --out runs/sft --time-limit $(or $(SFT_SECONDS),300)
	$(PY) clients/ppo/train_ppo.py --policy runs/sft --out runs/ppo-demo --url http://127.0.0.1:$(HTTP_PORT) \
	    --weights $(PPO_WEIGHTS) --policy-lr 1e-4 --time-limit $(or $(PPO_SECONDS),540) $(PPO_ARGS)

clean:
	rm -rf $(VENV) .cache
