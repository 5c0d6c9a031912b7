"""Configuration: YAML values, ``--set`` overrides and their errors."""

from __future__ import annotations

import pytest

from selfsup.config import RunConfig, apply_override, merge
from selfsup.errors import ConfigError


def test_override_goes_to_params_of_a_component_given_by_name_only() -> None:
    values = {"method": "byol"}  # as a recipe writes it
    apply_override(values, "method.base_momentum=0.996")
    config = RunConfig.from_dict(values)
    assert config.method.name == "byol" and config.method.params == {"base_momentum": 0.996}


def test_override_parses_yaml_values() -> None:
    values: dict = {}
    apply_override(values, "views.crop.scale=[0.3, 1.0]")
    apply_override(values, "train.progress_bar=false")
    apply_override(values, "method.name=vicreg")
    assert values == {"views": {"params": {"crop": {"scale": [0.3, 1.0]}}}, "train": {"progress_bar": False}, "method": {"name": "vicreg"}}


@pytest.mark.parametrize("raw,expected", [("1e-6", 1e-6), ("3", 3.0), ("0.5", 0.5), ("2E-3", 2e-3)])
def test_float_fields_accept_numbers_yaml_reads_as_strings(raw: str, expected: float) -> None:
    values: dict = {}
    apply_override(values, f"train.weight_decay={raw}")
    assert RunConfig.from_dict(values).train.weight_decay == pytest.approx(expected)


def test_non_numbers_in_float_fields_are_errors() -> None:
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        RunConfig.from_dict({"train": {"lr": "fast"}})


def test_unknown_keys_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        RunConfig.from_dict({"train": {"batchsize": 3}})
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "train.lr")


def test_changing_a_components_name_drops_its_old_params() -> None:
    base = {"method": {"name": "simclr", "params": {"temperature": 0.2}}}
    assert merge(base, {"method": "byol"}) == {"method": {"name": "byol", "params": {}}}
    assert merge(base, {"method": {"params": {"proj_dim": 64}}})["method"]["params"] == {"temperature": 0.2, "proj_dim": 64}
