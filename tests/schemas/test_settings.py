"""schemas.settings.ClusterSettings: flags, then the environment, then the defaults."""

from __future__ import annotations

import dataclasses

import pytest

from schemas.settings import ALLOWED_WORKERS_ENV, ClusterSettings, SettingsError, listed


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JM_CLUSTER_ID", "KAFKA_BOOTSTRAP_SERVERS", "JM_BOOTSTRAP_SERVERS",
                 "REDIS_URL", "JM_REDIS_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = ClusterSettings.load()
    assert (s.cluster_id, s.bootstrap_servers, s.redis_url) == (
        "jm", "127.0.0.1:9092", "redis://127.0.0.1:6379/0",
    )  # fmt: skip


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JM_CLUSTER_ID", "from-env")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("jm_redis_url", "redis://r:1/0")  # any case, the second name
    s = ClusterSettings.load(cluster_id=None, bootstrap_servers="flag:1")
    assert (s.cluster_id, s.bootstrap_servers, s.redis_url) == (
        "from-env", "flag:1", "redis://r:1/0",
    )  # fmt: skip
    # Given fields win; the others still come from the environment.
    assert ClusterSettings(cluster_id="given").bootstrap_servers == "kafka:9092"


@pytest.mark.parametrize("bad", ["", "-starts-with-dash", "has space", "x" * 101, "a/b"])
def test_invalid_cluster_id_is_refused(bad: str) -> None:
    with pytest.raises(SettingsError, match="cluster id"):
        ClusterSettings.load(cluster_id=bad)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClusterSettings.load().cluster_id = "other"  # type: ignore[misc]


def test_list_settings_come_from_flags_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ALLOWED_WORKERS_ENV, " tm-1, ,tm-2,tm-1 ")
    assert listed(None, ALLOWED_WORKERS_ENV) == ("tm-1", "tm-2")
    assert listed(["tm-3,tm-4", "tm-5"], ALLOWED_WORKERS_ENV) == ("tm-3", "tm-4", "tm-5")
    monkeypatch.delenv(ALLOWED_WORKERS_ENV)
    assert listed(None, ALLOWED_WORKERS_ENV) == ()
