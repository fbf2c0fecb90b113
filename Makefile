# Both targets build .venv themselves on a fresh machine, from the committed lock of exact versions
# (requirements.lock); the stamp makes later calls fast. `make lock` refreshes the lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
LOCK := requirements.lock
# torch first and pinned: the CPU wheel of this version is served locally; any other pulls gigabytes
# of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: run test test-all lint lock clean

$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $$(grep -E '^(pip|setuptools)==' $(LOCK))
	$(BIN)/python -m pip install -q $(TORCH)
	# Exactly the lock, without resolving: it lists every package (pytorch-holo's metadata pins
	# numpy<2 and wandb, which it does not need, so resolving would fail or pull them in).
	$(BIN)/python -m pip install -q --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mbo-run

# Two workers (pytest-xdist), one per core of CI's machine; each test file runs whole on one worker,
# so a file's module-scoped fixtures (pretrained models, campaigns) are built once.
XDIST := -n 2 --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m ''

lint: $(STAMP)
	$(BIN)/ruff check .

# Resolve pyproject.toml's ranges afresh in a throwaway venv and write every resolved version to
# the lock. Run it when pyproject.toml's dependencies change or to move to newer releases, then
# `make clean test` (and `make run`) before committing the new lock.
lock:
	rm -rf .lock-venv
	$(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip setuptools
	.lock-venv/bin/python -m pip install -q $(TORCH)
	.lock-venv/bin/python -m pip install -q '.[dev]'
	.lock-venv/bin/python -m pip install -q --no-deps pytorch-holo
	{ echo "# Exact versions for make run / make test / CI; regenerate with make lock."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -vE '^mbo-diffusion( @|==)'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv build
	@echo "wrote $(LOCK) ($$(grep -c '==' $(LOCK)) packages)"

clean:
	rm -rf $(VENV) outputs multirun
