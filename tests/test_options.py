"""An option is one ``Config`` field: its flag, the resume rule, --init-from and the recipes follow from it."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

import pytest

from wordrnn.bench import quality
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config, field_types, flag_of, marked, option, options
from wordrnn.core.flags import add_option, config_from_args, shared_parser
from wordrnn.core.recipes import RECIPES
from wordrnn.run import loop


def flag_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[0]: a for a in parser._actions if a.option_strings}


def test_every_option_is_a_shared_flag_with_the_fields_default_help_and_choices():
    actions = flag_actions(shared_parser("test"))
    for f in options():
        action = actions[flag_of(f.name)]
        assert action.dest == f.name
        assert action.default == f.default and action.help == f.metadata["help"], f.name
        assert tuple(action.choices or ()) == tuple(f.metadata["choices"] or ()), f.name
    declared = {flag for flag, a in actions.items() if a.dest in {f.name for f in dataclasses.fields(Config)}}
    assert declared == {flag_of(f.name) for f in options()}  # no setting is a flag by hand


def test_a_flag_parses_to_the_fields_type():
    config = config_from_args(shared_parser("test").parse_args(
        ["--seq-len", "3", "--lr", "0.5", "--seed", "4", "--optimizer", "sgd"]))
    assert (config.seq_len, config.lr, config.seed, config.optimizer) == (3, 0.5, 4, "sgd")
    with pytest.raises(SystemExit):
        shared_parser("test").parse_args(["--seed", "-1"])


def test_the_cell_help_names_every_cell_of_the_registry():
    help_text = flag_actions(shared_parser("test"))["--cell"].help
    for name, cell in CELLS.items():
        assert re.search(rf"\b{name} \(", help_text), name
        assert f"{name} ({cell.summary})" in help_text


@dataclasses.dataclass
class Saved:
    """A config of every kind of field, ``int | None`` among them, as ``from __future__ import annotations``
    leaves them: as text."""

    count: int | None = None
    path: str | None = None
    rate: float = 0.0
    on: bool = False
    name: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_a_config_json_type_is_read_from_the_fields_type_not_from_its_text():
    types = field_types(Saved)
    assert {name: t.describe() for name, t in types.items()} == {
        "count": "a whole number or null", "path": "text or null", "rate": "a number", "on": "true or false",
        "name": "text", "extra": "an object"}
    count = types["count"]
    assert count.accepts(None) and count.accepts(3)
    assert not count.accepts(2.5) and not count.accepts("3") and not count.accepts(True)
    assert types["rate"].accepts(1) and types["rate"].accepts(0.5)
    assert not types["rate"].accepts(None) and not types["rate"].accepts(True)
    assert types["on"].accepts(False) and not types["on"].accepts(0)
    assert types["extra"].accepts({}) and not types["extra"].accepts([])


def test_a_bool_option_is_a_flag_and_its_negation():
    toy = dataclasses.make_dataclass("Toy", [("tie", "bool", option(False, "tie the weights", group="model"))])
    parser = argparse.ArgumentParser()
    add_option(parser, dataclasses.fields(toy)[0], toy)
    assert parser.parse_args([]).tie is False
    assert parser.parse_args(["--tie"]).tie is True and parser.parse_args(["--no-tie"]).tie is False


def test_an_optional_number_parses_as_a_number():
    toy = dataclasses.make_dataclass("Toy", [("count", "int | None", option(None, "how many", group="model"))])
    parser = argparse.ArgumentParser()
    add_option(parser, dataclasses.fields(toy)[0], toy)
    assert parser.parse_args([]).count is None and parser.parse_args(["--count", "3"]).count == 3


def test_the_resume_and_init_from_rules_come_from_the_fields():
    assert loop.RESUMABLE == marked("resumable") == ("epochs", "patience", "extra")
    assert loop.ADOPTED == marked("adopted") == ("model", "cell", "hidden_size", "tie", "layers", "embed_dim",
                                                   "tokenizer", "min_freq")
    assert marked("derived") == ("vocab_size",)


def test_a_recipe_names_only_options():
    names = {f.name for f in options()}
    for name, settings in RECIPES.items():
        assert set(settings) <= names, name


def test_the_quality_rows_follow_the_fields():
    args = quality.build_parser().parse_args(["--dropout", "0.1", "--min-freq", "3", "--epochs", "4",
                                              "--bptt", "20"])
    recipe_row, plain_row = quality.configs_from_args(args)
    assert (recipe_row.dropout, recipe_row.min_freq, recipe_row.epochs, recipe_row.bptt) == (0.1, 3, 4, 20)
    assert recipe_row.cell == RECIPES["quality"]["cell"]
    assert (plain_row.cell, plain_row.dropout, plain_row.bptt) == ("rnn", Config.dropout, Config.bptt)
    assert (plain_row.min_freq, plain_row.epochs, plain_row.patience) == (3, 4, recipe_row.patience)


def test_config_json_names_the_lowest_format_version_that_knows_every_setting_it_uses():
    """A run that uses nothing newer stays readable by the wordrnn that could have trained it; one that does is
    refused there by version (``Config.from_dict``) instead of read without the setting."""
    assert Config().to_json_dict()["format_version"] == 2
    assert Config(context="poem").to_json_dict()["format_version"] == 2
    for setting in ({"tie": True}, {"weight_drop": 0.2}, {"dropout_in": 0.5}, {"ensemble": 3}):
        written = Config(**setting).to_json_dict()
        assert written["format_version"] == 3, setting
        assert Config.from_dict(written) == Config(**setting)
    written = Config(precision="bfloat16").to_json_dict()
    assert written["format_version"] == 4
    assert Config.from_dict(written) == Config(precision="bfloat16")
