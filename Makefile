# foleykit: the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.foleykit-installed

.PHONY: demo test venv clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Torch first, pinned: an unpinned torch pulled in by another package would be a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[video,app,train,eval,distributed,test]"
	touch $(STAMP)

venv: $(STAMP)

# Main job: the sound of the bundled example scene -> out/scene.wav (+ out/scene.wav.json).
# Real models when the hub is reachable; FOLEYKIT_MODELS=tiny runs it offline on stand-ins.
demo: $(STAMP)
	mkdir -p out
	$(BIN)/foleykit generate examples/scene.jpg -o out/scene.wav --seed 0 --overwrite
	$(BIN)/foleykit generate examples/street.mp4 -o out/street.mp4 --seed 0 --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
