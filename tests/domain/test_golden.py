"""Golden journals (tests/golden, append-only) replay to their recorded digests;
the deliberately impossible ones are refused."""

from pathlib import Path

import pytest

from coordinator.domain import InconsistentJournal, state_digest
from coordinator.domain.invariants import violations
from tests.domain.cluster import replay
from tests.golden.record import REFUSED, SCENARIOS, read_journal

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
JOURNALS = sorted(p for p in GOLDEN.glob("*.journal") if ".refused." not in p.name)
REFUSED_JOURNALS = sorted(GOLDEN.glob("*.refused.*.journal"))


def test_every_scenario_is_recorded() -> None:
    names = {p.name.removesuffix(".journal") for p in GOLDEN.glob("*.journal")}
    assert set(SCENARIOS) | set(REFUSED) <= names, "run python -m tests.golden.record"
    assert REFUSED_JOURNALS


@pytest.mark.parametrize("path", JOURNALS, ids=lambda p: p.name)
def test_golden_journal_replays_to_its_digest(path: Path) -> None:
    state = replay(read_journal(path))
    assert violations(state) == []
    expected = path.with_suffix(".digest").read_text().strip()
    assert state_digest(state) == expected


@pytest.mark.parametrize("path", REFUSED_JOURNALS, ids=lambda p: p.name)
def test_impossible_golden_journal_is_refused(path: Path) -> None:
    records = read_journal(path)
    replay(records[:-1])  # everything before the impossible record is fine
    with pytest.raises(InconsistentJournal):
        replay(records)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_still_produces_its_golden_journal(name: str) -> None:
    """Decide is deterministic: the scenario re-run today writes the same bytes.

    If this fails but the replay test passes, decide changed its decisions:
    fine if intended (record a new .vN scenario), never by accident.
    """
    assert SCENARIOS[name]().journal == read_journal(GOLDEN / f"{name}.journal")
