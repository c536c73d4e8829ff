"""Settings from the environment, and the generated references that must not drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import Settings, SettingsError, render_env_example, render_markdown
from agent.worker.dispatch import DispatchMetadata, MetadataError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_need_no_environment() -> None:
    s = Settings.from_env({})
    assert s == Settings()
    assert s.cache_path == Path(".cache") and s.noise_filter == "off"


def test_values_are_parsed_by_type() -> None:
    s = Settings.from_env(
        {
            "CACHE_PATH": "/data/cache",
            "WORKER_CAPACITY": "12",
            "TTS_SPEED": "1.25",
            "NOISE_FILTER": "DeepFilterNet",
            "AGENT_NAME": "",
        }
    )
    assert s.cache_path == Path("/data/cache")
    assert s.worker_capacity == 12 and s.tts_speed == 1.25
    assert s.noise_filter == "deepfilternet"
    assert s.agent_name == ""  # empty means automatic dispatch


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"WORKER_CAPACITY": "many"}, "WORKER_CAPACITY"),
        ({"NOISE_FILTER": "krisp"}, "NOISE_FILTER"),
        ({"WORKER_CAPACITY": "0"}, "WORKER_CAPACITY"),
        ({"LOAD_THRESHOLD": "1.5"}, "LOAD_THRESHOLD"),
        ({"LLM_BASE_URL": "http://127.0.0.1:8000/v1"}, "LLM_MODEL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_secrets_are_redacted() -> None:
    s = Settings.from_env({"LIVEKIT_API_SECRET": "s3cr3t-value", "LLM_API_KEY": "sk-abc"})
    shown = str(s.redacted())
    assert "s3cr3t-value" not in shown and "sk-abc" not in shown


def test_env_example_and_configuration_doc_match_settings() -> None:
    assert (REPO / ".env.example").read_text() == render_env_example(), (
        "regenerate: python -m agent config --env-example > .env.example"
    )
    assert (REPO / "docs" / "configuration.md").read_text() == render_markdown(), (
        "regenerate: python -m agent config --markdown > docs/configuration.md"
    )


def test_dispatch_metadata() -> None:
    assert DispatchMetadata.parse("") == DispatchMetadata()
    meta = DispatchMetadata.parse('{"instructions": "Be brief.", "participant": "caller"}')
    assert meta.instructions == "Be brief." and meta.participant == "caller"
    for raw, field in [
        ("{not json", None),
        ("[1, 2]", None),
        ('{"instructions": 3}', "instructions"),
        ('{"instructoins": "typo"}', "instructoins"),
        ('{"instructions": "' + "x" * 9000 + '"}', "instructions"),
    ]:
        with pytest.raises(MetadataError) as err:
            DispatchMetadata.parse(raw)
        assert err.value.field == field
