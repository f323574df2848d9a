# forensic-vsr: `make demo` installs everything and enhances a real clip; `make test` installs and runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
FVSR := $(VENV)/bin/fvsr
export FVSR_KEY_PASSPHRASE ?= demo-passphrase-not-secret

.PHONY: setup demo test lint bench clean-demo

setup:
	bash scripts/setup.sh

demo: setup clean-demo
	mkdir -p demo
	$(FVSR) keys generate --out demo/examiner.key --name "Demo Examiner"
	$(FVSR) enhance data/clips/carphone_distorted.mp4 -o demo/bundle --mode evidential --model lanczos --scale 2 \
		--key demo/examiner.key --examiner "Demo Examiner" --case DEMO-001
	$(FVSR) verify demo/bundle --pubkey demo/examiner.key.pub --evidence data/clips/carphone_distorted.mp4

clean-demo:
	rm -rf demo

test: setup
	$(PY) -m pytest -q -n 2  # two workers: the CI machine's two cores (about 7.5 minutes there)

lint: setup
	$(VENV)/bin/ruff check forensic_vsr tests bench scripts
	$(VENV)/bin/ruff format --check forensic_vsr
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/bench_enhance.py
