# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

# Re-run pip only when the dependency list or a native source changes; editable install keeps
# Python changes live and rebuilds the C extensions in place.
NATIVE_SOURCES := setup.py $(wildcard masking/*.[ch] proxy/*/*.[ch] policies/*/*.[ch])
$(STAMP): pyproject.toml $(NATIVE_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# mysqlclient (MySQLdb) compiles against libmariadb: without libmariadb-dev its tests skip.
	$(BIN)/python -m pip install --quiet mysqlclient || echo "mysqlclient not installed (apt-get install libmariadb-dev pkg-config); its tests will skip"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check proxy policies masking tests bench setup.py
	$(BIN)/ruff format --check proxy policies masking tests bench setup.py

demo: install
	$(BIN)/maskgate demo

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
