"""--recipe in every trainer: the recipe replaces the benchmark defaults, a flag given explicitly wins."""

from __future__ import annotations

import pytest

from wordrnn.core.config import Config
from wordrnn.core.flags import config_from_args, shared_parser
from wordrnn.core.recipes import RECIPES, recipe


def parse(*argv: str) -> Config:
    return config_from_args(shared_parser("test").parse_args(list(argv)))


def test_without_a_recipe_the_defaults_are_the_benchmark_configuration():
    assert parse().to_dict() == Config().validate().to_dict()


def test_the_quality_recipe_sets_every_setting_it_names():
    config = parse("--recipe", "quality")
    for name, value in RECIPES["quality"].items():
        assert getattr(config, name) == value, name
    assert config.cell != Config().cell  # it does change the benchmark configuration


def test_a_flag_given_explicitly_overrides_the_recipe():
    config = parse("--dropout", "0.1", "--recipe", "quality", "--hidden-size", "32")
    assert (config.dropout, config.hidden_size) == (0.1, 32)
    assert config.cell == RECIPES["quality"]["cell"]


@pytest.mark.parametrize("module", ["scratch.train", "torchmodels.train", "jaxmodels.train"])
def test_every_trainer_takes_the_recipe(module):
    trainer = pytest.importorskip(module)
    args = trainer.build_parser().parse_args(["--recipe", "quality"])
    assert config_from_args(args).cell == RECIPES["quality"]["cell"]


def test_recipe_returns_a_copy():
    before = dict(RECIPES["quality"])
    recipe("quality")["cell"] = "something else"
    assert RECIPES["quality"] == before
