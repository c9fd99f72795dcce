"""cityhub.toml: every error reported at once with its file, line and key; secrets from the environment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from hub.config import HubConfig, config_reference, load_config, parse_duration
from hub.errors import ConfigError
from hub.geofence import GridIndex
from hub.plugins import build_plugin_host
from hub.tomlpos import key_lines

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "cityhub.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def issues_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    return [str(issue) for issue in caught.value.issues]


BROKEN = """\
timezone = "Mars/Base"

[nats]
servers = ["nats://a:4222", "http://bad"]
user = "hub"
password = "${HUB_TEST_UNSET_PASSWORD}"

[admin]
port = 99999
tokn = "typo"

[[geo.layers]]
name = "districts"
path = "districts.geojson"

[[geo.layers]]
name = "bad name"
path = "x.geojson"
crs = "utm"

[merge]
window = "1 fortnight"
per_category.Not_A_Category = { distance_m = 50, window = "30m" }

[[rules]]
id = "gas"
when = 'category == "gas_leak"'
priority = "high"

[[rules]]
id = "multi"
when = \"\"\"
category == "fire"
\"\"\"
actions.route = [
  "dept:fire",
]
colour = "red"
"""


def test_every_structure_error_is_reported_with_file_line_and_key(tmp_path):
    path = write(tmp_path, BROKEN)
    found = issues_of(path, environ={})
    where = f"{path}:"
    assert found == [
        f"{where}1: timezone: unknown time zone 'Mars/Base': use an IANA name such as 'Asia/Shanghai'",
        f"{where}4: nats.servers: not a NATS URL: http://bad (write nats://host:port or tls://host:port)",
        f"{where}6: nats.password: environment variable HUB_TEST_UNSET_PASSWORD is not set"
        " (referenced as ${HUB_TEST_UNSET_PASSWORD})",
        f"{where}9: admin.port: Input should be less than or equal to 65535",
        f"{where}10: admin.tokn: Extra inputs are not permitted",
        f"{where}17: geo.layers[1].name: String should match pattern '^[A-Za-z0-9_-]+$'",
        f"{where}19: geo.layers[1].crs: Input should be 'wgs84', 'gcj02' or 'bd09'",
        f"{where}22: merge.window: '1 fortnight' is not a duration: write e.g. '90s', '15m', '1h30m', '2d' or seconds",
        f"{where}23: merge.per_category.Not_A_Category: " + found[8].split("Not_A_Category: ", 1)[1],
        f"{where}28: rules[0].priority: Input should be a valid integer, unable to parse string as an integer",
        f"{where}38: rules[1].colour: Extra inputs are not permitted",
    ]
    assert "String should match pattern" in found[8]  # which names exist is the taxonomy's business (test_taxonomy.py)


def test_missing_required_key_points_at_its_table(tmp_path):
    path = write(tmp_path, 'timezone = "UTC"\n\n[[rules]]\npriority = 3\n')
    assert issues_of(path) == [f"{path}:3: rules[0].id: Field required"]


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[admin]\nport = 8787\nhost = "unterminated\n')
    [issue] = issues_of(path)
    assert issue.startswith(f"{path}:3: (syntax): invalid TOML")


def test_environment_phase_reports_every_missing_file(tmp_path):
    path = write(
        tmp_path,
        'rule_files = ["rules/extra.toml"]\n\n[nats]\ncreds_file = "hub.creds"\n\n'
        '[[geo.layers]]\nname = "districts"\npath = "grids/districts.geojson"\n',
    )
    assert issues_of(path) == [
        f"{path}:1: rule_files[0]: file not found: {tmp_path / 'rules/extra.toml'}",
        f"{path}:4: nats.creds_file: file not found: {tmp_path / 'hub.creds'}",
        f"{path}:8: geo.layers[0].path: file not found: {tmp_path / 'grids/districts.geojson'}",
    ]


def test_secrets_come_from_the_environment_and_never_print(tmp_path):
    path = write(
        tmp_path,
        '[nats]\nservers = ["${HUB_NATS_URL:-nats://127.0.0.1:4222}"]\nuser = "hub"\npassword = "${HUB_PW}"\n'
        '[admin]\ntoken = "${HUB_TOKEN}"\n',
    )
    config = load_config(path, environ={"HUB_PW": "s3cret-pw", "HUB_TOKEN": "t0ken"})
    assert config.nats.servers == ["nats://127.0.0.1:4222"]
    assert config.nats.password.get_secret_value() == "s3cret-pw"
    assert config.admin.token.get_secret_value() == "t0ken"
    shown = repr(config) + config.model_dump_json()
    assert "s3cret-pw" not in shown and "t0ken" not in shown


def test_rule_files_are_checked_with_their_own_lines(tmp_path):
    (tmp_path / "rules").mkdir()
    write(
        tmp_path,
        '[[rules]]\nid = "night-gas"\nwhen = "hour(time) >= 22"\nactions = { route = ["dept:fire"] }\n\n'
        '[[rules]]\nid = "inline"\nwhen = "true"\n',
        "rules/extra.toml",
    )
    path = write(tmp_path, 'rule_files = ["rules/extra.toml"]\n\n[[rules]]\nid = "inline"\nwhen = "true"\n')
    rules_file = tmp_path / "rules" / "extra.toml"
    assert issues_of(path) == [f"{rules_file}:7: rules[1].id: rule id 'inline' is already defined in {path}"]
    write(tmp_path, '[[rules]]\nid = "night"\njsonlogic = {">=" = [{var = "payload.ppm"}, 5000]}\n', "rules/extra.toml")
    config = load_config(path)
    assert [rule.id for rule in config.all_rules()] == ["inline", "night"]
    assert len(config.rule_set) == 2 and config.all_rules()[1].jsonlogic == {">=": [{"var": "payload.ppm"}, 5000]}


def test_rules_that_do_not_compile_are_reported_at_their_lines(tmp_path):
    write(tmp_path, '[[rules]]\nid = "file-rule"\njsonlogic = {bogus = [1]}\n', "more_rules.toml")
    path = write(
        tmp_path,
        'rule_files = ["more_rules.toml"]\n\n[[rules]]\nid = "half"\nwhen = "category == "\n\n'
        '[[rules]]\nid = "both"\nwhen = "true"\njsonlogic = true\n\n'
        '[[rules]]\nid = "acts"\nwhen = "true"\n[rules.actions]\nseverity = "huge"\nroute = ["dept:fire", "x"]\n',
    )
    more = tmp_path / "more_rules.toml"
    found = issues_of(path)
    assert found[:4] == [
        f"{path}:5: rules[0].when: line 1, column 13 of the expression: expected a value, found end of expression",
        f"{path}:7: rules[1]: give exactly one of 'when' and 'jsonlogic'",
        f"{path}:16: rules[2].actions.severity: Input should be 'info', 'low', 'medium', 'high' or 'critical'",
        f"{path}:17: rules[2].actions.route: unknown route target 'x': use 'gridworker', 'dept:<name>', "
        "'connector:<name>', 'level:<district|street|community|grid|micro_grid>', 'five_way' (all five responders) or "
        "'five_way:<police|fire|medical|street|community>'",
    ]
    assert found[4] == f"{more}:3: rules[0].jsonlogic: JsonLogic /bogus: unknown operation 'bogus'"


def test_merge_policy_is_built_from_the_config(tmp_path):
    path = write(
        tmp_path,
        '[merge]\ncategory_groups = { gas = ["gas_leak", "smoke"] }\nwindow = "30m"\n'
        'per_category.fire = { distance_m = 300, window = "2h" }\n',
    )
    policy = load_config(path).merge.policy()
    assert policy.groups == {"gas": ["gas_leak", "smoke"]} and policy.default.window_s == 1800
    assert policy.per_category["fire"].distance_m == 300 and policy.per_category["fire"].window_s == 7200


class GreeterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    greeting: str = Field(description="What to say.")
    times: int = Field(1, ge=1, description="How often.")


def test_plugin_sections_are_validated_against_each_plugins_model(tmp_path):
    path = write(
        tmp_path,
        '[plugins.greeter]\nenabled = true\ngreeting = "hi"\ntimes = 0\nvolume = 11\n\n'
        '[plugins.ghost]\nenabled = false\n\n[plugins.plain]\ncolour = "red"\n',
    )
    models = {"greeter": GreeterSettings, "plain": None}
    assert issues_of(path, plugin_models=models) == [
        f"{path}:4: plugins.greeter.times: Input should be greater than or equal to 1",
        f"{path}:5: plugins.greeter.volume: Extra inputs are not permitted",
        f"{path}:7: plugins.ghost: no plugin named 'ghost' is installed (installed: greeter, plain)",
        f"{path}:11: plugins.plain.colour: plugin 'plain' takes no settings",
    ]


def test_plugin_settings_and_unconfigured_plugins(tmp_path):
    path = write(tmp_path, '[plugins.greeter]\ngreeting = "你好"\n')
    config = load_config(path, plugin_models={"greeter": GreeterSettings, "other": GreeterSettings})
    assert config.plugin_settings("greeter") == GreeterSettings(greeting="你好")
    assert config.plugin_settings("other") is None  # required settings and no section: left unconfigured
    assert config.plugin_enabled("greeter") and config.plugin_enabled("other")


def test_defaults_are_usable_and_durations_parse():
    config = HubConfig()
    assert config.nats.servers == [] and config.dedup.window == timedelta(hours=24)
    assert config.pipeline.personal_data["reporter.phone"] == "mask"
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 minutes")


def test_personal_data_policy_merges_with_the_masking_defaults(tmp_path):
    path = write(tmp_path, '[pipeline.personal_data]\n"reporter.phone" = "keep"\n"payload.plate" = "hash"\n')
    policies = load_config(path).pipeline.personal_data
    assert policies["reporter.phone"] == "keep" and policies["payload.plate"] == "hash"
    assert policies["reporter.id_card"] == "mask"


def test_key_lines_follow_tables_arrays_and_inline_tables():
    text = (
        'a = 1\n[t]\nx = { y = 1, z = [1,\n  2] }\n"quoted.key" = """\nnot = a key\n"""\n'
        "[[arr]]\nk = 1\n[[arr]]\nk = 2\n[arr.sub]\nm = 'x'\n"
    )
    lines = key_lines(text)
    assert lines[("a",)] == 1
    assert lines[("t", "x", "y")] == 3 and lines[("t", "x", "z", 1)] == 4
    assert lines[("t", "quoted.key")] == 5 and ("not",) not in lines and ("t", "not") not in lines
    assert lines[("arr", 0, "k")] == 9 and lines[("arr", 1, "k")] == 11
    assert lines[("arr", 1, "sub", "m")] == 13


def test_config_reference_is_in_sync():
    assert (REPO / "docs" / "config.md").read_text(encoding="utf-8") == config_reference(), (
        "docs/config.md is out of date: run `python -m hub.config > docs/config.md`"
    )


def test_example_config_is_valid_and_its_grids_load():
    config = load_config(REPO / "cityhub.toml", plugin_models=build_plugin_host().settings_models(), environ={})
    assert config.nats.servers == []  # the demo's embedded server
    assert config.admin.token.get_secret_value() == "demo-admin-token"
    index = GridIndex.load([layer.spec() for layer in config.geo.layers])
    located = index.locate(104.10, 30.67, crs="gcj02")
    assert located.admin_path[0].name == "成华区"
    matches = config.rule_set.match(
        {"category": "gas_leak", "source": "iot_mqtt", "payload": {"lel_pct": 30}, "time": "2026-05-01T12:00:00+08:00"}
    )
    assert [match.rule_id for match in matches] == ["gas-critical", "gas-default"]


def test_errors_never_echo_a_password_written_in_a_url(tmp_path):
    path = write(tmp_path, '[nats]\nservers = ["http://hub:s3cret@nats.local:4222"]\n')
    [issue] = issues_of(path)
    assert "s3cret" not in issue and "http://***@nats.local:4222" in issue
