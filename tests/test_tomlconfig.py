"""codepolicy.tomlconfig: the one TOML reader, checker and writer of RewardSpec and TrainConfig.

Properties: any mapping of TOML values round-trips through dumps -> loads; any valid values of
a config dataclass round-trip through write -> read -> check; any RewardSpec round-trips; every
unknown key is reported by name; a syntax error names the file and the line, in one line.
"""
from __future__ import annotations

import math
import string
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codepolicy import tomlconfig
from codepolicy.tomlconfig import (ConfigError, check_fields, check_keys, check_ranges, check_value, dumps_toml,
                                   field_docs, field_types, flatten_tables, loads_toml, read_toml, write_toml)

# ---------------------------------------------------------------------------- values

KEYS = st.text(max_size=8)
SCALARS = (st.booleans() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats(allow_nan=False)
           | st.text(max_size=12))
INLINE = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)
VALUES = SCALARS | st.lists(INLINE, max_size=4)
TABLES = st.recursive(st.dictionaries(KEYS, VALUES, max_size=4),
                      lambda inner: st.dictionaries(KEYS, VALUES | inner, max_size=4), max_leaves=12)


def same(a: Any, b: Any) -> bool:
    """``b`` (read back) equals ``a`` (written) as TOML reads it: tuples are lists, floats equal to the bit (the sign of zero too)."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and (math.isnan(a) and math.isnan(b) or repr(a) == repr(b))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(TABLES)
def test_any_mapping_round_trips_through_dumps_and_loads(data):
    text = dumps_toml(data)
    assert same(data, loads_toml(text)), text
    assert text == "" or text.endswith("\n") and not text.endswith("\n\n")


def test_strings_and_floats_are_written_exactly():
    data = {"s": 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f unicode é 🎲', "nan": math.nan,
            "inf": math.inf, "ninf": -math.inf, "tiny": 5e-324, "third": 1 / 3, "neg0": -0.0, "big": 10 ** 20 + 0.5,
            "key with space": 1, "": "empty key", "dotted.key": [], "t": ("a", "b"), "nested": {"x": {"y": 1}}}
    back = loads_toml(dumps_toml(data))
    assert same(data, back)
    assert len(dumps_toml({"s": "a\nb\rc\x85d\u2028e"}).splitlines()) == 1  # one line, whatever splits lines


def test_dumps_refuses_what_toml_cannot_hold():
    with pytest.raises(TypeError, match="t.x = None"):
        dumps_toml({"t": {"x": None}})
    with pytest.raises(TypeError, match="no TOML form for set"):
        dumps_toml({"s": {1, 2}})


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6), SCALARS, min_size=1, max_size=6),
       st.data())
def test_syntax_error_names_the_file_and_the_line(data, draw):
    lines = dumps_toml(data).rstrip("\n").split("\n")
    at = draw.draw(st.integers(0, len(lines)))
    broken = "\n".join(lines[:at] + [draw.draw(st.sampled_from(["x = ", "= 1", "[[", "k = [1,"]))] + lines[at:])
    with pytest.raises(ConfigError) as info:
        loads_toml(broken, "conf.toml")
    message = str(info.value)
    assert message.startswith("conf.toml: line ") and "is not valid TOML" in message and "\n" not in message
    line = int(message.split("line ")[1].split()[0])
    assert at + 1 <= line <= len(lines) + 1  # the broken line, or later for an unclosed array


def test_read_toml_missing_file_and_not_utf8(tmp_path):
    with pytest.raises(FileNotFoundError, match="spec file not found: .*nope.toml"):
        read_toml(tmp_path / "nope.toml", what="spec file")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"name = '\xe9'\n")
    with pytest.raises(ConfigError, match="latin1.toml: .*not UTF-8"):
        read_toml(bad)

    class MyError(ValueError):
        pass

    broken = tmp_path / "broken.toml"
    broken.write_text("a = 1\n[b\n")
    with pytest.raises(MyError, match=r"broken.toml: line 2 \(column 3\) is not valid TOML"):
        read_toml(broken, error=MyError)


def test_write_toml_is_atomic_and_reads_back(tmp_path):
    path = tmp_path / "sub" / "c.toml"
    write_toml(path, {"a": 1, "t": {"b": [1.5, "x"]}})
    assert read_toml(path) == {"a": 1, "t": {"b": [1.5, "x"]}}
    assert [p.name for p in path.parent.iterdir()] == ["c.toml"]


def test_flatten_tables_one_level():
    assert flatten_tables({"a": 1, "lora": {"rank": 4, "alpha": 8}}) == {"a": 1, "lora_rank": 4, "lora_alpha": 8}
    with pytest.raises(ConfigError, match="c.toml: table 'lora.deep' is nested too deep"):
        flatten_tables({"lora": {"deep": {"x": 1}}}, origin="c.toml")


# ---------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Sample:
    """A config dataclass with every supported field type."""

    name: str = field(default="run", metadata={"doc": "what the run is called"})
    count: int = field(default=1, metadata={"doc": "how many"})
    rate: float = 0.5
    on: bool = False
    modules: tuple[str, ...] = ("all",)
    mode: Literal["fast", "slow"] = "fast"
    limit: int | None = None
    weights: Mapping[str, float] = field(default_factory=dict)


SAMPLE_VALUES = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=10), "count": st.integers(-10 ** 12, 10 ** 12), "rate": st.floats(allow_nan=False),
    "on": st.booleans(), "modules": st.lists(st.text(max_size=5), max_size=3).map(tuple),
    "mode": st.sampled_from(["fast", "slow"]), "limit": st.integers(0, 100),
    "weights": st.dictionaries(st.text(max_size=4), st.floats(allow_nan=False), max_size=3)})


@settings(max_examples=200, deadline=None)
@given(SAMPLE_VALUES)
def test_any_valid_values_round_trip_through_write_and_read(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("cfg") / "sample.toml"
    write_toml(path, values)
    back = check_fields(read_toml(path), Sample, origin=path)
    assert back == values
    assert Sample(**back) == Sample(**values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=10).filter(lambda k: k not in field_types(Sample)), min_size=1, max_size=4,
                unique=True), SAMPLE_VALUES)
def test_every_unknown_key_is_reported_by_name(unknown, values):
    with pytest.raises(ConfigError) as info:
        check_fields({**values, **{k: 1 for k in unknown}}, Sample, origin="my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: unknown key") and "\n" not in message
    for key in unknown:
        assert repr(key) in message


def test_unknown_key_lists_close_matches():
    with pytest.raises(ConfigError, match=r"unknown key 'cuont' \(did you mean 'count'\?\); known keys: name, count"):
        check_fields({"cuont": 3}, Sample)
    with pytest.raises(ConfigError, match=r"s.toml: unknown limits 'max_move' \(did you mean 'max_moves'\?\), 'zzz'"):
        check_keys(["max_move", "zzz"], ["max_moves", "move_seconds"], origin="s.toml", noun="limit")


@pytest.mark.parametrize("key, value, message", [
    ("count", True, "count must be an integer, got True"),  # a boolean is not an integer
    ("count", 1.0, "count must be an integer, got 1.0"),
    ("rate", "fast", "rate must be a number, got 'fast'"),
    ("on", 1, "on must be a boolean, got 1"),
    ("name", 3, "name must be a string, got 3"),
    ("modules", ["a", 2], "modules must be a list of strings"),
    ("mode", "medium", "mode must be one of fast, slow, got 'medium'"),
    ("limit", "none", "limit must be an integer, got 'none'"),
    ("weights", 3, "weights must be a table, got 3"),
    ("weights", {"a": "b"}, "weights must be a table"),
])
def test_wrong_types_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match="^c.toml: " + message.replace("(", r"\(").replace(")", r"\)")):
        check_fields({key: value}, Sample, origin="c.toml")


def test_conversions():
    assert check_value(3, float, "rate") == 3.0 and type(check_value(3, float, "rate")) is float
    assert check_value(["a", "b"], tuple[str, ...], "m") == ("a", "b")
    assert check_value("all-linear", tuple[str, ...], "m") == ("all-linear",)  # one string: a one-string list
    assert check_value(None, int | None, "limit") is None
    assert check_value(math.inf, float, "rate") == math.inf
    with pytest.raises(ConfigError, match="rate must be a number, got inf"):
        check_value(math.inf, float, "rate", finite=True)
    assert check_value({"a": 1}, Mapping[str, float], "w") == {"a": 1.0}
    assert check_value(object, Any, "anything") is object


def test_from_text_parses_flags():
    parsed = check_fields({"count": " 7", "rate": "3e-4", "on": "yes", "modules": "q_proj, v_proj", "mode": "slow",
                           "name": "7", "limit": "none"}, Sample, from_text=True)
    assert parsed == {"count": 7, "rate": 3e-4, "on": True, "modules": ("q_proj", "v_proj"), "mode": "slow",
                      "name": "7", "limit": None}
    for key, text in (("count", "seven"), ("on", "maybe"), ("rate", "fast")):
        with pytest.raises(ConfigError, match=f"config field '{key}' must be"):
            check_fields({key: text}, Sample, from_text=True, label="config field '{key}'")


def test_choices_table_and_custom_error_class():
    with pytest.raises(ValueError, match="config field 'name' must be one of run, walk, got 'fly'") as info:
        check_fields({"name": "fly"}, Sample, choices={"name": ("run", "walk")}, label="config field '{key}'",
                     error=ValueError)
    assert type(info.value) is ValueError


def test_ranges():
    ranges = {"count": (1, None, True, True), "rate": (0.0, 1.0, False, True)}
    check_ranges(Sample(count=1, rate=1.0), ranges)
    check_ranges({"count": 5}, ranges)  # a name the mapping lacks is skipped
    with pytest.raises(ConfigError, match="x.toml: config field 'count' must be >= 1, got 0"):
        check_ranges({"count": 0}, ranges, origin="x.toml", label="config field '{key}'")
    with pytest.raises(ConfigError, match="rate must be > 0.0, got 0.0"):
        check_ranges(Sample(rate=0.0), ranges)
    with pytest.raises(ConfigError, match="rate must be <= 1.0, got 1.5"):
        check_ranges(Sample(rate=1.5), ranges)


def test_field_docs_and_types():
    assert field_docs(Sample)["name"] == "what the run is called" and field_docs(Sample)["rate"] == ""
    assert list(field_types(Sample)) == ["name", "count", "rate", "on", "modules", "mode", "limit", "weights"]
    assert field_types(Sample)["modules"] == tuple[str, ...]


def test_importing_the_helper_stays_light():
    import subprocess

    code = ("import sys, codepolicy.tomlconfig; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('codepolicy', 'rewards', 'train', 'sandbox', 'envs', 'torch', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['codepolicy', 'codepolicy.tomlconfig']"


# ---------------------------------------------------------------------------- RewardSpec through the helper

import rewards  # noqa: E402
from rewards.spec import RewardSpec, SpecError  # noqa: E402
from sandbox.records import Limits  # noqa: E402

FINITE = st.floats(-1e6, 1e6, allow_nan=False)


def _param_values(default: Any) -> st.SearchStrategy:
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-10 ** 6, 10 ** 6)
    if isinstance(default, float):
        return FINITE
    if isinstance(default, Mapping):
        return st.dictionaries(st.text(max_size=6), FINITE, max_size=3)
    if default is None:  # the performance target: unset (the game's option) or pinned
        return st.none() | st.integers(4, 1 << 16)
    raise AssertionError(f"no strategy for a parameter defaulting to {default!r}")


@st.composite
def reward_specs(draw) -> RewardSpec:
    limit_types = field_types(Limits)
    limits = draw(st.none() | st.fixed_dictionaries({}, optional={
        name: (st.floats(1e-3, 1e3) if tp is float else st.integers(1, 10 ** 9)) for name, tp in limit_types.items()
    }).map(lambda values: Limits(**values)))
    spec = RewardSpec(terms=(), game="2048", games=draw(st.integers(1, 64)),
                      options=draw(st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=6),
                                                   st.integers(0, 4096) | st.text(max_size=4) | st.booleans(),
                                                   max_size=3)),
                      limits=limits)
    for name in draw(st.lists(st.sampled_from(["format", "compliance", "performance", "diversity", "length"]),
                              min_size=1, unique=True)):
        rule = rewards.get_rule(name)
        params = draw(st.fixed_dictionaries({}, optional={k: _param_values(v) for k, v in rule.params.items()}))
        spec = spec.with_rule(name, draw(FINITE), **params)
    return spec


@settings(max_examples=150, deadline=None)
@given(reward_specs())
def test_any_reward_spec_round_trips_through_toml(spec):
    again = RewardSpec.from_text(spec.to_toml())
    assert again.to_dict() == spec.to_dict()
    assert (again.game, again.games, dict(again.options), again.limits) == \
        (spec.game, spec.games, dict(spec.options), spec.limits)
    assert again.names == spec.names and again.weights == spec.weights
    assert [t.all_params() for t in again.terms] == [t.all_params() for t in spec.terms]


def test_reward_spec_file_errors_come_from_the_helper(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('game = "2048"\n[rules.format]\nweight = 1.0\nplays = [\n')
    with pytest.raises(SpecError, match=r"spec.toml: line 4 .*is not valid TOML"):
        RewardSpec.from_toml(path)
    with pytest.raises(SpecError, match=r"my.toml: unknown keys 'gmae' \(did you mean 'game' or 'games'\?\), 'rulez' \(did you mean 'rules'\?\)"):
        RewardSpec.from_text('gmae = "2048"\nrulez = 1\n', origin="my.toml")
    with pytest.raises(SpecError, match="did you mean 'plays'"):
        RewardSpec.from_text("[rules.format]\nweight = 1.0\nplay = 1.0\n", origin="my.toml")
    assert tomlconfig.loads_toml(rewards.default_spec().to_toml()) == rewards.default_spec().to_dict()
