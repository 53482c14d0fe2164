# Two set-up commands (README): `make demo` and `make test`.
# Both create .venv, install the system libraries and the pinned stack, and are
# idempotent: the install step reruns only when pyproject/constraints change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.audiossl-installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)

.PHONY: demo test install sysdeps lint bench clean

install: $(STAMP)

# System libraries: libsndfile (soundfile, fairseq2n), FFmpeg's shared libraries (torchcodec), and a C
# toolchain with Python's headers (pesq builds from source; the native selective scan compiles with cc).
sysdeps:
	@missing=""; \
	ldconfig -p 2>/dev/null | grep -q 'libsndfile\.so\.1' || missing="$$missing libsndfile1"; \
	ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so' || missing="$$missing ffmpeg"; \
	command -v cc >/dev/null || missing="$$missing build-essential"; \
	$(PYTHON) -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "audiossl needs system packages:$$missing"; \
	    echo "run:  sudo apt-get install -y$$missing   then run make again"; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml constraints.txt $(PLUGIN_PROJECTS) | sysdeps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[codecs,fairseq2,pyannote,export,hdf5,decoder,shar,dev]' \
	  $(foreach p,$(PLUGIN_PROJECTS),-e $(dir $(p)))
	@touch $@

demo: $(STAMP)
	cd egs/synth/ssl1 && ./run.sh
	@echo "demo done: report egs/synth/ssl1/exp/report.md (rerun: finished stages are skipped)"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests $(wildcard plugins/*/tests)

lint: $(STAMP)
	$(BIN)/ruff check audiossl tests bench

bench: $(STAMP)
	for b in fbank scan encoders objectives kmeans loaders; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) exp
