# Two commands for a fresh machine: `make demo` and `make test` (both install first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test clean

install: $(STAMP)

# Re-install only when pyproject.toml changes, so a second `make test` starts at once.
# Plain pip (not uv/poetry): it takes torch and torchvision from this machine's disk.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded default: fine-tune the bundled efficientnet-lite0 on a small
# generated competition with 3 folds, predict with TTA, validate and archive the submission.
demo: install
	$(BIN)/python -m comp.data.synthetic demo/competition --classes 4 --per-class 60 --size 48 --seed 0
	$(BIN)/comp train configs/demo.yaml --data demo/competition --out demo/run --epochs 2 --folds 3 --overwrite
	$(BIN)/comp predict demo/run --tta --out demo/prediction.csv
	$(BIN)/comp submit demo/prediction.csv --dir demo/submissions -m "make demo"

# pytest exits 5 when it collects no test; that is a failure here, with a clear message.
test: install
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) demo .pytest_cache
