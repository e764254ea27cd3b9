# Two commands do the whole set-up on a fresh machine:
#   make demo   # venv + install, then tune -> compile -> run the bundled example on this CPU
#   make test   # venv + install, then the test suite (about 14 min on 2 cores: two pytest-xdist workers, one
#               # test file each at a time; `make test-slow` runs the slow variants)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-slow aarch64-env clean

venv: $(STAMP)

# torch==2.13.0 first: that exact version is the CPU build (a range would fetch a CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/tvmopt demo

# Two workers: most tests wait on one core (imports, LLVM, one subprocess), so two files at a time
# take 14 min where one at a time took 21. --dist loadfile keeps a file's module fixtures (a tuned
# log several tests share) in one worker instead of building them twice.
test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-slow: venv
	$(BIN)/python -m pytest -m slow

# Cross toolchain + QEMU + an aarch64 root with TVM's runtime (cached in ~/.cache/tvmopt).
aarch64-env: venv
	PYTHON=$(BIN)/python bash tvmopt/runtime/aarch64_env.sh

clean:
	rm -rf artifacts examples/*.onnx .pytest_cache
