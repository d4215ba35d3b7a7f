# ussnb — two commands for a newcomer (see README.md):
#   make demo   install everything (system + Python), prepare the offline starter set, run the cpu pipeline
#   make test   run the test suite (the real-browser test too when Chromium is installed)
#   make lab    JupyterLab on a finished run (RUN_DIR, default runs/cpu): its notebooks with widgets working
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
PRESET ?= cpu
RUN_DIR ?= runs/$(PRESET)
STAMP := .install.stamp

# system packages: audio codecs/renderer + the Debian packages whose real recordings build the starter set.
# One list, read by this Makefile, `ussnb doctor` and the starter recipe alike (first field of each line).
APT_LIST := ussnb/resources/apt-packages.txt
APT_PACKAGES := $(shell awk '{sub(/\#.*/, "")} NF {print $$1}' $(APT_LIST))
ifeq ($(strip $(APT_PACKAGES)),)
$(error no packages read from $(APT_LIST))
endif

.PHONY: demo test lab install install-system install-python doctor prepare pipeline notebooks clean-install

demo: install doctor prepare pipeline

install: $(STAMP)

$(STAMP): pyproject.toml $(APT_LIST)
	$(MAKE) install-system
	$(MAKE) install-python
	touch $(STAMP)

install-system:
	@if [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	else \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then echo "Not root: install these system packages first: sudo apt-get install$$missing"; exit 1; fi; \
	fi

install-python:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[all]"

doctor: install
	$(PYTHON) -m ussnb.cli doctor

prepare: install
	$(PYTHON) -m ussnb.cli data prepare starter

pipeline: install
	$(PYTHON) -m ussnb.cli pipeline --preset $(PRESET) --run-dir $(RUN_DIR)

test: install
	$(PYTHON) -m pytest -q

lab: install
	$(PYTHON) -m ussnb.cli lab $(RUN_DIR)

notebooks:
	$(PYTHON) tools/build_notebooks.py

clean-install:
	rm -f $(STAMP)
