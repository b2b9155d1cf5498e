# The two commands of the README: `make test` and `make book`. Each installs what it needs first.
# .ci/run runs exactly these, so the README cannot drift from what CI proves.
VENV  ?= .venv
BIN   := $(VENV)/bin
# torch as a range so an existing install (Colab's, or a local CPU wheel) is used as it is.
# The team's machines take the local CPU wheel with TORCH=torch==2.13.0 (see CONTRIBUTING.md).
TORCH ?= torch>=2.4

.PHONY: install test book test-numerics clean mutants soak

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[book,test]"
	touch $@

# Unit tests and every notebook under nbval, two workers. loadfile keeps a notebook's cells on one
# worker (the default 'load' splits them: NameError); one BLAS thread per worker on 2 cores.
test: install
	$(BIN)/nbstripout --verify --keep-id notebooks/*.ipynb
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 --durations=30 tests notebooks

# The site, every chapter executed from scratch (two at a time, one BLAS thread each, into the
# cache the build reads), then built with warnings as errors and nitpicky references.
book: install
	rm -rf _build
	OMP_NUM_THREADS=1 $(BIN)/python tools/prefill_cache.py notebooks/*.ipynb
	$(BIN)/jupyter-book build . -W -n --keep-going

# Mutation testing: every bug of tools/mutants_catalogue.py applied to a copy of the tree, then its
# chapter (nbval) and its unit tests run on the copy; prints what each catches. Hours on two cores:
# pass MUTANTS_ARGS="--chapter 06" (or --tests-only, --jobs 2) to run a part.
mutants: install
	OMP_NUM_THREADS=1 $(BIN)/python tools/mutants.py $(MUTANTS_ARGS)

# The numerics matrix: notebooks and the tests marked `numerics` under other kernel paths, thread
# counts and seeds (tools/numerics_matrix.py; CONTRIBUTING.md, "The numerics matrix").
test-numerics: install
	$(BIN)/python tools/numerics_matrix.py $(CONFIGS)

# The kill soak: a 500-step CPU run SIGKILLed 50 times at random moments and resumed each time must end
# bitwise where an uninterrupted run ends (tools/kill_soak.py; a few minutes on 2 cores).
soak: install
	OMP_NUM_THREADS=1 $(BIN)/python tools/kill_soak.py --kills 50 --steps 500

clean:
	rm -rf _build
