# hamr — HAMR reference implementation. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HAMR_DATA_DIR ?= $(CURDIR)/data
ARGS ?=
comma := ,

# --- make reproduce-table PROFILE=cpu|cpu_short|paper|smoke [FORCE=1] [LAUNCHER=basic|parallel|slurm] [SWEEP_ARGS=...]
# cpu: the converged cpu table (conf/experiment/table_cpu_converged.yaml); cpu_short: the first cpu
# table (3 epochs, 1,000 examples: conf/experiment/table_cpu.yaml), kept so that its runs stay reproducible
PROFILE ?= cpu
# each profile's Hydra preset and tuning study (results/tuning/<preset>), where not table_<profile>
EXPERIMENT_cpu := table_cpu_converged
EXPERIMENT_cpu_short := table_cpu
EXPERIMENT ?= $(or $(EXPERIMENT_$(PROFILE)),table_$(PROFILE))
STUDY ?= results/tuning/$(EXPERIMENT)
LAUNCHER ?= basic
FORCE ?=
SWEEP_ARGS ?=
# the grid of src/hamr/paper.py (tests/test_makefile.py checks that these lists are the same), its
# datasets by task (the tests check each one's task against conf/dataset/)
NER_DATASETS := bionlp2004,tweetner7_2020,mit_restaurant
CLASSIFICATION_DATASETS := hurricane_irma_2017,cyclone_idai_2019,sst5
MAIN_DATASETS := $(NER_DATASETS),$(CLASSIFICATION_DATASETS)
ABLATION_DATASETS := bionlp2004,hurricane_irma_2017
BASELINES := ce,focal,dice,icf
ABLATIONS := no_resampling,no_meta_weight,no_neighbor_boost
# HAMR as this project runs it (hamr=default), and with the authors' per-step constants (hamr=authors);
# the converged cpu profile runs hamr=default alone (its regime is not the authors' constants')
HAMR_PRESETS_cpu := default
HAMR_PRESETS ?= $(or $(HAMR_PRESETS_$(PROFILE)),default$(comma)authors)
# HAMR over each other loss (the main table's "HAMR + loss (dev)" column); the first cpu profile's
# committed grid predates it, so it is empty there
HAMR_LOSSES_paper := focal,dice,icf
HAMR_LOSSES_cpu_short :=
# (the cpu profile: the loss chosen on dev by make tune-hamr-loss, per task where they differ, by
# results/tuning/table_cpu_converged/hamr_loss.json: Dice on Irma17, focal on BioNLP)
HAMR_LOSSES_cpu :=
HAMR_LOSSES_CLASSIFICATION_cpu := dice
HAMR_LOSSES_NER_cpu := focal
# (the smoke grid: one loss is enough to run the column through the pipeline)
HAMR_LOSSES_smoke := focal
HAMR_LOSSES ?= $(HAMR_LOSSES_$(PROFILE))
# per task, where the loss chosen on dev differs: classification (chosen on Irma17) and NER (on BioNLP)
HAMR_LOSSES_CLASSIFICATION ?= $(or $(HAMR_LOSSES_CLASSIFICATION_$(PROFILE)),$(HAMR_LOSSES))
HAMR_LOSSES_NER ?= $(or $(HAMR_LOSSES_NER_$(PROFILE)),$(HAMR_LOSSES))
# the smoke grid's toy runs all collapse (one epoch of 64 examples, a random 2-layer BERT): its tables
# compare them anyway, so that the whole table pipeline runs
TABLE_ARGS_smoke := --keep-collapsed
TABLE_ARGS ?= $(TABLE_ARGS_$(PROFILE))
SEEDS_paper := 1,2,3
SEEDS_cpu_short := 1,2,3
SEEDS_cpu := 1,2,3,4,5
# the ablations' seeds where a profile runs fewer than the main table's
ABLATION_SEEDS_cpu := 1,2,3
SEEDS_smoke := 1,2
RESULTS_paper := results/table_paper
RESULTS_cpu := results/table_cpu_converged
RESULTS_cpu_short := results/table_cpu
RESULTS_smoke := outputs/table_smoke
TABLES_paper := results/tables_paper
TABLES_cpu := results/tables
TABLES_cpu_short := results/tables_cpu_short
TABLES_smoke := outputs/table_smoke/tables
FIGURES_paper := results/figures_paper
FIGURES_cpu := results/figures
FIGURES_cpu_short := results/figures_cpu_short
FIGURES_smoke := outputs/table_smoke/figures
SEEDS ?= $(SEEDS_$(PROFILE))
ABLATION_SEEDS ?= $(or $(ABLATION_SEEDS_$(PROFILE)),$(SEEDS))
RESULTS ?= $(RESULTS_$(PROFILE))
TABLES ?= $(TABLES_$(PROFILE))
FIGURES ?= $(if $(filter command line,$(origin TABLES)),$(TABLES)/../figures,$(FIGURES_$(PROFILE)))
SWEEP_ANY_SEEDS := $(BIN)/python -m hamr.train -m experiment=$(EXPERIMENT) hydra/launcher=$(LAUNCHER) \
	paths.results_dir=$(abspath $(RESULTS)) $(if $(FORCE),force=true) $(SWEEP_ARGS)
SWEEP := $(SWEEP_ANY_SEEDS) trainer.seed=$(SEEDS)

.PHONY: help install test test-fast test-gpu lint train demo bench bench-modes reproduce-table tables tune-baselines tune-hamr tune-hamr-loss tune-summary check-reproduce clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install:  ## create .venv with the CPU build of torch and the package (editable) with its dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,cpu,hf]'

# two pytest workers (one per core, one torch thread each: tests/conftest.py); a file's tests stay on
# one worker, so a module's fixture (the smoke grid) is built once
TEST_WORKERS ?= 2
test:  ## every test that runs on a CPU, the slow end-to-end ones too (what CI runs)
	$(BIN)/python -m pytest -m "not gpu" -n $(TEST_WORKERS) --dist loadfile

test-fast:  ## the quick day-to-day subset: skips the `slow` end-to-end runs
	$(BIN)/python -m pytest -m "not slow and not gpu"

test-gpu:  ## the `gpu` tests, on a machine with CUDA
	$(BIN)/python -m pytest -m gpu

lint:  ## ruff
	$(BIN)/ruff check src tests scripts examples
	$(BIN)/ruff format --check src tests scripts examples

train:  ## one training run: make train ARGS="dataset=sst5 baseline_loss=focal"
	$(BIN)/python -m hamr.train $(ARGS)

demo:  ## a smoke-sized run of every baseline loss on Cyclone-Idai (a minute or two on a CPU)
	$(BIN)/python -m hamr.train -m debug=smoke baseline_loss=ce,focal,dice,icf $(ARGS)

bench:  ## speed benchmarks: training step (CE vs HAMR modes vs the authors' step) and the k-NN graph -> results/bench/
	$(BIN)/python scripts/bench_step.py --profile $(ARGS)
	$(BIN)/python scripts/bench_knn.py

MODES_SWEEP := $(BIN)/python -m hamr.train -m experiment=table_cpu method=hamr hamr=authors ablation=full dataset=cyclone_idai_2019 \
	trainer.seed=1,2,3 $(SWEEP_ARGS)

bench-modes:  ## accuracy of the cheaper meta modes vs exact on Cyclone-Idai, 3 seeds, cpu table settings (about 1.5 h on 2 cores) -> results/bench/modes/
	$(MODES_SWEEP) paths.results_dir=$(abspath results/table_cpu)
	$(MODES_SWEEP) paths.results_dir=$(abspath results/bench/modes/scope0) hamr.meta.scope=0
	$(MODES_SWEEP) paths.results_dir=$(abspath results/bench/modes/every4) hamr.meta.every=4
	$(MODES_SWEEP) paths.results_dir=$(abspath results/bench/modes/scope2) hamr.meta.scope=2
	$(BIN)/python scripts/bench_modes.py

# a tuning study's runs at the values the profile's tuned block chose are the grid's runs of those seeds
# (the same configuration, the test by which a sweep skips a finished run): copied first, then skipped
ADOPT_FROM ?= $(STUDY)
adopt_tuning_runs = $(if $(wildcard $(ADOPT_FROM)/runs),$(BIN)/python scripts/adopt_tuning_runs.py $(ADOPT_FROM) \
	$(RESULTS) --experiment $(EXPERIMENT) --hamr-losses cls=$(HAMR_LOSSES_CLASSIFICATION) \
	--hamr-losses ner=$(HAMR_LOSSES_NER) || status=1;)

# HAMR over the losses $(1) on the datasets $(2), nothing when $(1) is empty
hamr_over_losses = $(if $(1),$(SWEEP) method=hamr hamr=default ablation=full baseline_loss=$(1) dataset=$(2) || status=1;)

reproduce-table:  ## the paper's main and ablation tables: PROFILE=cpu (default) | cpu_short | paper (GPU) | smoke; resumes, FORCE=1 reruns
	@status=0; \
	$(adopt_tuning_runs) \
	$(SWEEP) method=baseline baseline_loss=$(BASELINES) dataset=$(MAIN_DATASETS) || status=1; \
	$(SWEEP) method=hamr hamr=$(HAMR_PRESETS) ablation=full dataset=$(MAIN_DATASETS) || status=1; \
	$(call hamr_over_losses,$(HAMR_LOSSES_CLASSIFICATION),$(CLASSIFICATION_DATASETS)) \
	$(call hamr_over_losses,$(HAMR_LOSSES_NER),$(NER_DATASETS)) \
	$(SWEEP_ANY_SEEDS) trainer.seed=$(ABLATION_SEEDS) method=hamr hamr=$(HAMR_PRESETS) ablation=$(ABLATIONS) \
	  dataset=$(ABLATION_DATASETS) || status=1; \
	$(BIN)/python scripts/build_tables.py $(RESULTS) --out $(TABLES) --figures $(FIGURES) --profile $(PROFILE) \
	  $(TABLE_ARGS) || status=1; \
	if [ $$status -ne 0 ]; then echo "reproduce-table: some jobs failed; tables show what finished" >&2; fi; \
	exit $$status

# --- make tune-baselines [PROFILE=cpu] [TUNE_DATASETS="..."]: dev-only tuning, $(STUDY)/
TUNE_DATASETS ?= hurricane_irma_2017 bionlp2004
TUNE := $(BIN)/python -m hamr.train -m experiment=$(EXPERIMENT) paths.results_dir=$(abspath $(STUDY)) \
	$(SWEEP_ARGS)
# each study's tune preset: the first cpu profile (cpu_short) tunes a baseline's lr (8 values), focal's
# lr x gamma and HAMR's knobs; the converged cpu profile tunes every method's lr alone (4 values), the rest kept
TUNE_LR_cpu := lr_cpu_converged
TUNE_LR ?= $(or $(TUNE_LR_$(PROFILE)),lr)
TUNE_FOCAL ?= $(or $(TUNE_LR_$(PROFILE)),focal)

tune-baselines:  ## every baseline's learning rate (cpu_short: and focal's gamma) on dev, 4 (cpu_short: 8) trials x 2 seeds per dataset; resumes
	@status=0; for ds in $(TUNE_DATASETS); do \
	  for loss in $(subst $(comma), ,$(BASELINES)); do \
	    $(TUNE) method=baseline tune=$$( [ $$loss = focal ] && echo $(TUNE_FOCAL) || echo $(TUNE_LR) ) baseline_loss=$$loss dataset=$$ds || status=1; \
	  done; \
	done; $(BIN)/python scripts/summarize_tuning.py $(STUDY) || status=1; exit $$status

# --- make check-reproduce [RUN=results/table_cpu/runs/mit_restaurant/ce/seed=1]
RUN ?= results/table_cpu/runs/mit_restaurant/ce/seed=1
check-reproduce:  ## rerun one committed run folder with today's code and compare it digit for digit (about 2 min)
	$(BIN)/python scripts/check_reproduce.py $(RUN)

# The first cpu profile's (cpu_short's) HAMR search ran the meta step every 4th batch (2x cheaper; the
# weight-net travel keeps f_θ's total movement, see conf/hamr/default.yaml), its choices re-checked with the
# exact step; the converged cpu profile tunes in the mode its table runs (hamr.meta.scope=0, set by the profile)
TUNE_HAMR_cpu := tune=lr_cpu_converged method=hamr
TUNE_HAMR ?= $(or $(TUNE_HAMR_$(PROFILE)),tune=hamr hydra.sweeper.n_trials=8 hamr.meta.every=4)

tune-hamr:  ## HAMR's lr (cpu_short: its knobs) on dev, as many trials x 2 seeds per dataset as each baseline; resumes
	@status=0; for ds in $(TUNE_DATASETS); do \
	  $(TUNE) $(TUNE_HAMR) dataset=$$ds || status=1; \
	done; $(BIN)/python scripts/summarize_tuning.py $(STUDY) || status=1; exit $$status

tune-hamr-loss:  ## HAMR + loss: which loss HAMR weights (focal, Dice, ICF), 3 trials x 2 seeds per dataset at HAMR's tuned values; after tune-hamr
	@status=0; for ds in $(TUNE_DATASETS); do \
	  $(TUNE) tune=hamr_loss dataset=$$ds || status=1; \
	done; $(BIN)/python scripts/summarize_tuning.py $(STUDY) || status=1; exit $$status

tune-summary:  ## the tuning study's summary (every trial's mean dev, the choices) -> results/tuning/<preset>/
	$(BIN)/python scripts/summarize_tuning.py $(STUDY)

tables:  ## rebuild the tables and figures from finished runs: make tables PROFILE=cpu
	$(BIN)/python scripts/build_tables.py $(RESULTS) --out $(TABLES) --figures $(FIGURES) --profile $(PROFILE) $(TABLE_ARGS)

clean:  ## remove run folders and caches (never results/)
	rm -rf outputs multirun wandb .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
