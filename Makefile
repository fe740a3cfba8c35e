# Every target sets up what it needs: a fresh machine needs only Python 3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint sysdeps clean

# Editable installs as a plain path in a .pth file ("compat"): setuptools' default
# editable finder imports pathlib and re at every interpreter start (~8 ms), which every
# server start, CLI run and benchmark here would pay and an installed package does not.
# setuptools calls compat mode transitional: where it is gone, the default is used.
EDITABLE := --config-settings editable_mode=compat

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(EDITABLE) -e '.[test]' 2>/dev/null || $(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The demo needs only the package (and cloudpickle), not the test tools.
DEMO_STAMP := $(VENV)/.installed-demo
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(EDITABLE) -e . 2>/dev/null || $(PY) -m pip install -q -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) examples/demo.py
	$(PY) examples/cluster_demo.py

test: $(STAMP) sysdeps
	$(PY) -m ruff check easycluster tests bench examples
	$(PY) -m ruff format --check easycluster tests bench examples
	$(PY) -m mypy easycluster
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py
	$(PY) bench/bench_nodeset.py
	$(PY) bench/bench_gather.py
	$(PY) bench/bench_shell.py
	$(PY) bench/startup.py
	$(PY) bench/bench_map.py --quick
	$(PY) bench/bench_farm.py --quick
	$(PY) bench/bench_handshake.py
	-$(PY) bench/bench_srun.py  # needs root and slurm-wlm (make sysdeps)
	-$(PY) bench/bench_tree.py  # needs root (network namespaces)

lint: $(STAMP)
	$(PY) -m ruff check easycluster tests bench examples
	$(PY) -m ruff format --check easycluster tests bench examples
	$(PY) -m mypy easycluster

# System packages the test suite drives for real (sshd, systemd-analyze).
sysdeps:
	@bash .ci/sysdeps

clean:
	rm -rf $(VENV) build *.egg-info
