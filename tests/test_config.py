import pytest

from hf_memotion.data.loading import load_data
from hf_memotion.specs import apply_overrides, load_run_config


def test_overrides_parse_yaml_values_and_nest():
    config = apply_overrides(
        {"training": {"epochs": 30}, "seed": 0}, ["training.epochs=3", "seed=7", "model.pooling=max"]
    )
    assert config == {"training": {"epochs": 3}, "seed": 7, "model": {"pooling": "max"}}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["training.epochs"])
    listed = apply_overrides({"models": [{"name": "a"}, {"name": "b", "training": {}}]}, ["models.1.training.epochs=3"])
    assert listed["models"][1]["training"] == {"epochs": 3}
    with pytest.raises(ValueError, match="'5' is not an index of a list of 2"):
        apply_overrides(listed, ["models.5.name=x"])
    with pytest.raises(ValueError, match="'seed' is not a section"):
        apply_overrides({"seed": 0}, ["seed.value=1"])


def test_run_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml not found"):
        load_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_run_config(bad)
    assert load_run_config(None, ["seed=1"]) == {"seed": 1}


def test_data_section(tmp_path):
    data = load_data({"demo": {"output_dir": str(tmp_path / "demo"), "n_train": 12, "n_test": 4}})
    assert data["train"].num_rows == 12
    assert load_data({"path": str(tmp_path / "demo")})["test"].num_rows == 4
    with pytest.raises(ValueError, match="either 'path' or 'demo'"):
        load_data({"path": "x", "demo": {}})
    with pytest.raises(ValueError, match="needs 'path'"):
        load_data({})
