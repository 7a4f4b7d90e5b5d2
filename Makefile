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

.PHONY: install serve test bench lint clean

$(STAMP): requirements.lock pyproject.toml clients/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps --no-build-isolation -e . -e clients
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(VENV)/bin/fgrm serve --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache
