"""Settings resolve flag -> environment -> default, and refuse nonsense with the variable's name."""

from __future__ import annotations

import argparse

import pytest

from service.config import SETTINGS, ConfigError, Settings, add_arguments


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults() -> None:
    settings = Settings.from_args(parse(), environ={})
    assert (settings.port, settings.metrics_port, settings.max_lines, settings.profile) == (
        50051,
        9464,
        1000,
        "national",
    )
    assert settings.embedded
    assert settings.effective_admin_port == 50052  # the embedded default turns the admin port on


def test_flag_beats_environment_beats_default() -> None:
    env = {"GATEKEEPER_PORT": "6000", "GATEKEEPER_PROFILE": "xizang"}
    assert Settings.from_args(parse("--port", "7000"), environ=env).port == 7000
    assert Settings.from_args(parse(), environ=env).port == 6000
    assert Settings.from_args(parse(), environ=env).profile == "xizang"


def test_redis_url_alias_and_admin_port_off_with_external_redis() -> None:
    settings = Settings.from_args(parse(), environ={"REDIS_URL": "redis://10.0.0.1:6379/0"})
    assert settings.redis_url == "redis://10.0.0.1:6379/0"
    assert not settings.embedded
    assert settings.effective_admin_port == 0
    explicit = Settings.from_args(
        parse(), environ={"REDIS_URL": "redis://x:1/0", "GATEKEEPER_REDIS_URL": "redis://y:2/0"}
    )
    assert explicit.redis_url == "redis://y:2/0"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GATEKEEPER_PORT": "abc"}, "GATEKEEPER_PORT"),
        ({"GATEKEEPER_PORT": "70000"}, "GATEKEEPER_PORT"),
        ({"GATEKEEPER_MAX_LINES": "0"}, "GATEKEEPER_MAX_LINES"),
        ({"GATEKEEPER_DEMO_DATA": "perhaps"}, "GATEKEEPER_DEMO_DATA"),
        ({"GATEKEEPER_DECISION_LOG": "some"}, "GATEKEEPER_DECISION_LOG"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_args(parse(), environ=env)


def test_every_setting_is_documented_in_help() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = parser.format_help()
    for spec in SETTINGS:
        assert spec.flag in text
        assert spec.env in text
