"""Config composition over every group option, and start-up validation."""

import itertools
import math
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from hamr.config import ConfigError, validate
from tests.conftest import CONF


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_every_group_has_its_options():
    assert options("dataset") == [
        "bionlp2004",
        "cyclone_idai_2019",
        "hurricane_irma_2017",
        "mit_restaurant",
        "sst5",
        "tweetner7_2020",
    ]
    assert options("model") == [
        "bert_base_cased",
        "bert_base_random",
        "deberta_v3_base",
        "minilm",
        "minilm_random",
        "tiny_random",
    ]
    assert options("baseline_loss") == ["ce", "dice", "focal", "icf"]
    assert set(options("logger")) == {"none", "wandb"}


@pytest.mark.parametrize(
    "dataset,model,loss", itertools.product(options("dataset"), options("model"), options("baseline_loss"))
)
def test_compose_dataset_model_loss(compose_cfg, dataset, model, loss):
    cfg = compose_cfg([f"dataset={dataset}", f"model={model}", f"baseline_loss={loss}"])
    settings = validate(cfg)
    assert settings.dataset.name == dataset and settings.model.name == model
    assert settings.method.name == loss
    assert settings.dataset.task == ("ner" if dataset in ("bionlp2004", "mit_restaurant", "tweetner7_2020") else "cls")
    # the NER datasets carry the authors' NER values of HAMR's hyper-parameters
    assert settings.hamr.lambda_ == (0.1 if settings.dataset.task == "ner" else 0.7)


def leaf_values(node, path=()) -> dict:
    """The values an option's YAML file sets, by key path (the hydra node's too; interpolations as
    written), without its defaults list."""
    values = {}
    for key, value in node.items():
        if key == "defaults":
            continue
        if isinstance(value, dict):
            values.update(leaf_values(value, (*path, key)))
        else:
            values[(*path, key)] = value
    return values


def value_at(cfg, path: tuple):
    for key in path:
        cfg = cfg[key]
    return cfg


@pytest.mark.parametrize("group", ["logger", "debug", "experiment", "tune", "ablation", "hamr", "trainer", "paths"])
def test_every_other_option_composes_and_sets_what_its_file_says(compose_cfg, group):
    for option in options(group):
        path = CONF / group / f"{option}.yaml"
        package = () if path.read_text().startswith("# @package _global_") else (group,)
        validate(compose_cfg([f"{group}={option}"]))
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # with the hydra node kept
            cfg = OmegaConf.to_container(compose("train", overrides=[f"{group}={option}"], return_hydra_config=True))
        expected = {(*package, *k): v for k, v in leaf_values(OmegaConf.to_container(OmegaConf.load(path))).items()}
        assert expected, f"{path} sets nothing"
        assert {key: value_at(cfg, key) for key in expected} == expected, path


def test_data_dir_follows_the_environment(compose_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("HAMR_DATA_DIR", str(tmp_path))
    assert validate(compose_cfg(["dataset=sst5"])).dataset.dir == f"{tmp_path}/sst5"


@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.lr=-1", "trainer.lr=-1.0 is invalid; allowed: > 0"),
        ("trainer.select=median", "trainer.select='median' is invalid; allowed: best | last"),
        ("trainer.epochs=0", "trainer.epochs=0 is invalid"),
        (
            "hamr.gamma=0.99",
            "hamr.gamma/hardness_half_life=(0.99, 1.0) is invalid; allowed: exactly one of the two set",
        ),
        (
            "hamr.weight_net_lr=1e-4",
            "hamr.weight_net_lr/weight_net_travel=(0.0001, 1.0) is invalid; allowed: exactly one",
        ),
        ("hamr.inner_lr_ratio=null", "hamr.inner_lr/inner_lr_ratio=(None, None) is invalid; allowed: exactly one"),
        ("hamr.hardness_half_life=0", "hamr.hardness_half_life=0.0 is invalid; allowed: > 0 or null"),
        ("hamr.weight_net_travel=-1", "hamr.weight_net_travel=-1.0 is invalid; allowed: > 0 or null"),
        ("hamr.hardness_signal=loss", "hamr.hardness_signal='loss' is invalid; allowed: weight | relative_loss"),
        ("hamr.weight_activation=softplus", "hamr.weight_activation='softplus' is invalid; allowed: sigmoid | exp"),
        ("hamr.weight_normalisation=sum", "hamr.weight_normalisation='sum' is invalid; allowed: detached_mean | mean"),
        ("hamr.ner_example_loss=sum", "hamr.ner_example_loss='sum' is invalid; allowed: max | mean | tokens"),
        ("hamr.meta_set=train", "hamr.meta_set='train' is invalid; allowed: balanced | dev"),
        ("hamr.meta_min_train_count=-1", "hamr.meta_min_train_count=-1 is invalid; allowed: >= 0"),
        ("hamr.tau=0", "hamr.tau=0.0 is invalid; allowed: > 0"),
        ("hamr.hard_ratio=0", "hamr.hard_ratio=0.0 is invalid; allowed: (0, 1]"),
        ("hamr.weight_clip_low=9", "hamr.weight_clip_low/high"),
        ("dataset.max_train_examples=0", "dataset.max_train_examples=0 is invalid"),
        (
            "trainer.graph_lengths=[64,32]",
            "trainer.graph_lengths=[64, 32] is invalid; allowed: null or increasing lengths "
            "in [8, trainer.max_length=128]",
        ),
        ("trainer.graph_lengths=[32,256]", "trainer.graph_lengths=[32, 256] is invalid"),
        # names that become folders stay one folder: no way out of results_dir or the caches
        (
            "dataset.name=../../../escaped",
            "dataset.name='../../../escaped' is invalid; allowed: letters, digits and "
            "_ . + - (one folder name, not . or ..)",
        ),
        ("dataset.name=..", "dataset.name='..' is invalid"),
        ("hamr.name=a/b", "hamr.name='a/b' is invalid"),
        ("ablation.name=..", "ablation.name='..' is invalid"),
        ("model.name=x/../y", "model.name='x/../y' is invalid"),
    ],
)
def test_out_of_range_values_fail_at_start_up(compose_cfg, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_cfg([override]))


def test_cuda_graphs_need_a_meta_step_every_step(compose_cfg):
    with pytest.raises(
        ConfigError, match=re.escape("hamr.meta.every=4 is invalid; allowed: 1 with trainer.cuda_graphs")
    ):
        validate(compose_cfg(["method=hamr", "trainer.cuda_graphs=true", "hamr.meta.every=4"]))
    assert validate(
        compose_cfg(["method=baseline", "trainer.cuda_graphs=true", "hamr.meta.every=4"])
    ).trainer.cuda_graphs


def test_the_authors_preset_checks_its_per_step_values(compose_cfg):
    with pytest.raises(ConfigError, match=re.escape("hamr.gamma=1.0 is invalid; allowed: [0, 1) or null")):
        validate(compose_cfg(["hamr=authors", "hamr.gamma=1.0"]))


def test_misspelled_key_and_wrong_type_fail_at_composition(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="lrr"):
        compose_cfg(["trainer.lrr=1e-4"])
    with pytest.raises((ConfigCompositionException, ValidationError, ConfigKeyError)):
        compose_cfg(["trainer.epochs=three"])


def test_unknown_dataset_lists_the_options(compose_cfg):
    with pytest.raises(ConfigCompositionException, match="Could not find 'dataset/sst-5'") as err:
        compose_cfg(["dataset=sst-5"])
    assert "sst5" in str(err.value.__cause__ or err.value) or "sst5" in str(err.value)


def test_a_long_override_dirname_is_shortened_to_a_distinct_valid_folder_name():
    from hamr.config import MAX_DIRNAME_BYTES, short_dirname

    assert short_dirname("dataset=sst5,trainer.lr=0.0001") == "dataset=sst5,trainer.lr=0.0001"
    long_a = ",".join(f"hamr.option_{i}=0.{i}12345678901234" for i in range(12))
    long_b = long_a[:-1] + "5"  # differs only in its last character
    short_a, short_b = short_dirname(long_a), short_dirname(long_b)
    assert len(short_a.encode()) <= MAX_DIRNAME_BYTES and short_a.startswith(long_a[:150])
    assert short_a != short_b and short_dirname(long_a) == short_a  # distinct and stable
    assert len(short_dirname("é" * 300).encode()) <= MAX_DIRNAME_BYTES  # cut on a character boundary


# in place of the profile's own tuned block (deleted first)
TUNED = ["~tuned", "+tuned={lr:{focal:[0.0003,0.0005],hamr:[0.0004,0.0002]},gamma:{focal:[1.0,1.5]}}"]


@pytest.mark.parametrize(
    "overrides,lr,gamma",
    [
        (["baseline_loss=focal", "dataset=hurricane_irma_2017"], 3e-4, 1.0),  # classification entry
        (["baseline_loss=focal", "dataset=bionlp2004"], 5e-4, 1.5),  # NER entry
        (["baseline_loss=ce", "dataset=bionlp2004"], 1e-4, None),  # no entry for CE: the profile's 1e-4
        (["method=hamr", "ablation=no_resampling", "dataset=sst5"], 4e-4, None),  # every ablation of hamr=default
        (["method=hamr", "hamr=authors", "dataset=sst5"], 1e-4, None),  # the authors' preset is not tuned
    ],
)
def test_a_profiles_tuned_values_go_to_the_method_and_task_they_were_chosen_for(compose_cfg, overrides, lr, gamma):
    settings = validate(compose_cfg(["experiment=table_cpu", *overrides, *TUNED]))
    assert settings.trainer.lr == pytest.approx(lr)
    if gamma is not None:
        assert settings.baseline_loss["gamma"] == pytest.approx(gamma)
    untuned = validate(compose_cfg(["experiment=table_cpu", *overrides, "~tuned"]))  # no tuned values: the defaults
    assert untuned.trainer.lr == pytest.approx(1e-4) and untuned.baseline_loss.get("gamma", 2.0) == 2.0


def test_a_tuned_entry_needs_a_classification_and_an_ner_value(compose_cfg):
    with pytest.raises(Exception, match=r"tuned.lr.focal is \[0.0003\]: expected \[classification value, NER value\]"):
        validate(compose_cfg(["experiment=table_cpu", "baseline_loss=focal", "~tuned", "+tuned={lr:{focal:[0.0003]}}"]))


# Values a YAML file sets on purpose to something other than its schema's default: (section, key) -> why.
# Everything else a composed section holds must equal the schema's default, so that code building
# the dataclasses directly (tests, the package used as a library) runs what `python -m hamr.train` runs.
ON_PURPOSE = {
    ("hamr", "lambda_"): "the authors' NER value, 0.1 (dataset/_ner.yaml through ${per_task:...})",
    ("trainer", "lr"): "the authors' NER learning rate, 2e-5 (dataset/_ner.yaml)",
    ("dataset", "hub"): "each dataset's Hub source",
}


def differing_defaults(section: str, composed: dict, schema) -> dict:
    """(key, YAML value, schema default) wherever a composed section differs from its schema's default."""
    defaults = OmegaConf.to_container(OmegaConf.structured(schema))
    return {
        key: (composed[key], default)
        for key, default in defaults.items()
        if default != "???" and (section, key) not in ON_PURPOSE and composed[key] != default
    }


@pytest.mark.parametrize("dataset", ["cyclone_idai_2019", "bionlp2004"])
@pytest.mark.parametrize(
    "section,overrides",
    [
        ("hamr", ["method=hamr"]),
        ("trainer", []),
        ("dataset", []),
    ],
)
def test_the_schema_defaults_are_what_the_yaml_composes(compose_cfg, dataset, section, overrides):
    from hamr.config import DatasetConfig, HamrConfig, TrainerConfig

    schema = {"hamr": HamrConfig, "trainer": TrainerConfig, "dataset": DatasetConfig}[section]
    cfg = OmegaConf.to_container(compose_cfg([f"dataset={dataset}", *overrides]), resolve=True)
    assert differing_defaults(section, cfg[section], schema) == {}


def test_the_hamr_presets_inherit_every_value_they_do_not_spell_out(compose_cfg):
    from hamr.config import HamrConfig

    for preset in options("hamr"):
        spelt_out = set(OmegaConf.load(CONF / "hamr" / f"{preset}.yaml")) - {"defaults"}
        composed = OmegaConf.to_container(compose_cfg(["method=hamr", f"hamr={preset}"]), resolve=True)["hamr"]
        inherited = {k: v for k, v in differing_defaults("hamr", composed, HamrConfig).items() if k not in spelt_out}
        assert inherited == {}, preset


@pytest.mark.parametrize("loss,name", [("ce", "hamr_full"), ("focal", "hamr-focal_full"), ("icf", "hamr-icf_full")])
def test_hamr_over_a_loss_names_it_and_reads_hamrs_knobs_and_the_losss_own_tuned_values(compose_cfg, loss, name):
    settings = validate(
        compose_cfg(
            ["experiment=table_cpu", "method=hamr", f"baseline_loss={loss}", "dataset=hurricane_irma_2017", *TUNED]
        )
    )
    assert settings.method.name == name
    assert settings.trainer.lr == pytest.approx(4e-4)  # HAMR's tuned lr, over whatever loss
    if loss == "focal":
        assert settings.baseline_loss["gamma"] == pytest.approx(1.0)  # focal's own tuned gamma
    own = ["~tuned", "+tuned={lr:{hamr-focal:[0.0001,0.0002],hamr:[0.0004,0.0002]}}"]
    if loss == "focal":  # an entry of its own wins over HAMR's
        assert validate(
            compose_cfg(
                ["experiment=table_cpu", "method=hamr", "baseline_loss=focal", "dataset=hurricane_irma_2017", *own]
            )
        ).trainer.lr == pytest.approx(1e-4)


@pytest.mark.parametrize("option", options("tune"))
def test_a_grid_tune_preset_runs_every_point_of_its_grid(compose_cfg, option):
    """The grid sampler stops after n_trials: fewer than the grid's points silently drop trials (a
    method then gets fewer than the others), more repeat them."""
    compose_cfg([f"tune={option}"])  # registers the schemas
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"tune={option}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    if "grid" not in sweeper.sampler._target_.lower():  # a sampled study instead: reproducible only with its seed
        assert sweeper.sampler.seed is not None, f"conf/tune/{option}.yaml: {sweeper.sampler._target_} has no seed"
        return
    grid = {key: re.fullmatch(r"choice\((.*)\)", str(v)).group(1).split(",") for key, v in sweeper.params.items()}
    points = math.prod(len(values) for values in grid.values())
    assert sweeper.n_trials == points, f"conf/tune/{option}.yaml: n_trials {sweeper.n_trials}, grid of {points}"
