PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,formats,napari,large,distributed]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# the three bundled LIVECell SH-SY5Y samples (one well at 0, 36 and 80 h): for one culture the
# cell type is given, and --min-score 0 keeps the cells the model is unsure of (see README)
demo: $(STAMP)
	$(BIN)/phaseseg measure samples/ --out demo_out --cell-type shsy5y --min-score 0
	@echo "Open demo_out/report.html (the measurements, a growth curve and the overlays)."

bench: $(STAMP)
	$(BIN)/python benchmarks/score_fold0.py --json benchmarks/results/fold0_bundled.json
	$(BIN)/python benchmarks/score_fold0.py --tta --json benchmarks/results/fold0_bundled_tta.json
	$(BIN)/python benchmarks/predict_speed.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info src/*.egg-info

CP_VENV := benchmarks/peers/.cp3venv

# Cellpose 3 in a venv of its own, so that the project's dependencies stay clean
$(CP_VENV)/.installed:
	$(PY) -m venv $(CP_VENV)
	$(CP_VENV)/bin/pip install --quiet --upgrade pip
	$(CP_VENV)/bin/pip install --quiet torch==2.13.0 cellpose==3.1.1.3
	touch $@

cellpose-venv: $(CP_VENV)/.installed
.PHONY: cellpose-venv

IS_VENV := benchmarks/peers/.isvenv

# InstanSeg in a venv of its own (benchmarks/peers/instanseg_peer.py). torch is pinned in the same
# command, or pip pulls a multi-GB CUDA build; its training script also needs part of the
# [full] extra: torchvision (from PyPI a CUDA build whose C++ ops do not load on this CPU torch:
# instanseg_peer.py imports it without them), monai, kornia, edt, seaborn and pandas; hyperopt
# for its optional post-processing tuning
$(IS_VENV)/.installed:
	$(PY) -m venv $(IS_VENV)
	$(IS_VENV)/bin/pip install --quiet --upgrade pip
	$(IS_VENV)/bin/pip install --quiet torch==2.13.0 instanseg-torch==0.1.2 \
		torchvision==0.28.0 monai==1.6.1 kornia==0.9.0 edt==3.1.2 seaborn==0.13.2 \
		pandas==3.1.1 hyperopt==0.3.0
	touch $@

instanseg-venv: $(IS_VENV)/.installed
.PHONY: instanseg-venv

bench-peers: $(STAMP) $(CP_VENV)/.installed $(IS_VENV)/.installed
	$(BIN)/python benchmarks/peers/run.py
.PHONY: bench-peers
