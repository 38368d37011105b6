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
	$(BIN)/python -m pip install --quiet -e '.[dev,export,tune,track,multilabel,ordinal]'
	touch $(STAMP)

# The main job on the embedded default: the Fashion-MNIST demo competition, bundled
# efficientnet-lite0, train -> predict --tta -> submit (see README). Debian's data package is
# installed when apt-get can (root, Debian); otherwise comp demo says how to get the data.
demo: install
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null \
		|| echo "could not install dataset-fashion-mnist with apt-get"; fi
	$(BIN)/comp demo --out demo

# pytest exits 5 when it collects no test; that is a failure here, with a clear message.
test: install
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) demo .pytest_cache
