# Every target builds .venv first, so each works on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

# BERT distillation on a slice of SQuAD 2.0 (../shared/data/squad2, --data, or the hub), on CPU.
demo: $(STAMP)
	$(BIN)/python -m paretune.flows.bert_demo

# The same tuning flow on a built-in two-metric function: a minute, no data or model needed.
demo-quick: $(STAMP)
	$(BIN)/python -m paretune.flows.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The quick benchmarks; benchmarks/RESULTS.md lists the long ones (optimizer quality, BERT frontier).
bench: $(STAMP)
	$(BIN)/python benchmarks/storage_frontier.py
	$(BIN)/python -m benchmarks.optimizer_speed
	$(BIN)/python -m benchmarks.parallel_utilization

clean:
	rm -rf $(VENV) paretune.duckdb .paretune

# SigOpt's own optimizer for the quality benchmark's `sigopt` column: sigoptlite needs Python 3.10.
SIGOPT_PYTHON ?= python3.10
SIGOPT_VENV := benchmarks/.sigopt-venv
.PHONY: sigopt-env
sigopt-env: $(SIGOPT_VENV)/.installed
$(SIGOPT_VENV)/.installed: benchmarks/sigoptlite-requirements.txt
	$(SIGOPT_PYTHON) -m venv $(SIGOPT_VENV)
	$(SIGOPT_VENV)/bin/python -m pip install --quiet -r benchmarks/sigoptlite-requirements.txt
	touch $@
