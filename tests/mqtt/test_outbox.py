"""The outbox: sequence numbers that never repeat, order, the historian's confirmation, replay, and
the cap policy."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import zlib
from pathlib import Path

import pytest

from gateway.mqtt.outbox import Outbox
from gateway.mqtt.settings import OutboxSettings


def message(seq: int, size: int = 10) -> bytes:
    return json.dumps({"seq": seq, "s": ["x" * size]}).encode()


def fill(outbox: Outbox, count: int, size: int = 10) -> list[int]:
    return [outbox.append(lambda seq: message(seq, size), 3) for _ in range(count)]


def test_sequence_numbers_start_at_one_and_survive_restarts_even_when_empty(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, OutboxSettings())
    assert fill(outbox, 3) == [1, 2, 3]
    outbox.confirm(3)
    outbox.close()
    reopened = Outbox(path, OutboxSettings())
    assert reopened.stats().pending_messages == 0
    assert fill(reopened, 2) == [4, 5], "a number once given is never given again"
    assert [json.loads(e.payload)["seq"] for e in reopened.pending(0, 10)] == [4, 5]


def test_pending_is_in_order_after_a_cursor_and_a_confirmation_forgets_what_it_covers(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings())
    fill(outbox, 10)
    assert [e.seq for e in outbox.pending(0, 4)] == [1, 2, 3, 4]
    assert [e.seq for e in outbox.pending(4, 100)] == [5, 6, 7, 8, 9, 10]
    assert outbox.pending(3, 1)[0].payload == message(4), "stored compressed, returned as published"
    assert outbox.confirm(2, [(5, 5), (99, 120)]) == 3  # up to 2, and 5; unknown numbers are ignored
    assert [e.seq for e in outbox.pending(0, 100)] == [3, 4, 6, 7, 8, 9, 10]
    assert outbox.confirm(2) == 0, "a repeated confirmation deletes nothing more"
    stats = outbox.stats()
    assert (stats.last_seq, stats.pending_messages, stats.pending_samples) == (10, 7, 21)


def test_a_replay_returns_what_is_still_stored_and_says_which_numbers_the_cap_dropped(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings(max_bytes=1024**2))
    seqs = [outbox.append(lambda seq: message(seq) + os.urandom(20_000), 3) for _ in range(100)]
    oldest = outbox.pending(0, 1)[0].seq
    assert oldest > 10, "the cap dropped the oldest"
    outbox.confirm(0, [(oldest, oldest + 1)])  # two confirmed by the historian, then deleted
    found = outbox.replay(oldest - 3, oldest + 4)
    assert [e.seq for e in found.entries] == [oldest + 2, oldest + 3, oldest + 4]
    assert found.entries[0].payload.startswith(message(oldest + 2)), "as published"
    assert found.dropped == (oldest - 3, oldest - 1), "the cap's part, never the confirmed part"
    assert found.absent == 2
    assert outbox.replay(seqs[-1], seqs[-1]).dropped is None


@pytest.mark.parametrize("durability, level", [("full", 2), ("normal", 1)])
def test_wal_mode_and_the_chosen_sync_level(tmp_path: Path, durability: str, level: int) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings(durability=durability))  # type: ignore[arg-type]
    assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == level


def test_size_cap_drops_the_oldest_counts_them_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    cap = OutboxSettings(max_bytes=1024**2)
    outbox = Outbox(path, cap)
    # Incompressible payloads, about 20 kB each: 200 of them need about 4 MB.
    seqs = [outbox.append(lambda seq: message(seq) + os.urandom(20_000), 3) for _ in range(200)]
    stats = outbox.stats()
    assert stats.used_bytes <= cap.max_bytes
    remaining = [e.seq for e in outbox.pending(0, 1000)]
    assert remaining == list(range(remaining[0], 201)), "what is left is the newest, without holes"
    assert remaining[-1] == seqs[-1]
    assert stats.dropped_messages == remaining[0] - 1 > 100
    assert stats.dropped_samples == 3 * stats.dropped_messages
    outbox.close()
    assert Outbox(path, cap).stats().dropped_messages == stats.dropped_messages, "drop counts persist"


def test_age_cap_drops_messages_older_than_max_age(tmp_path: Path) -> None:
    now = [1_000_000.0]
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings(max_age_h=1.0), clock=lambda: now[0])
    fill(outbox, 5)  # at t
    now[0] += 1800
    fill(outbox, 5)  # at t + 30 min
    now[0] += 1801
    assert outbox.append(lambda seq: message(seq), 3) == 11  # t + 60 min 1 s: the first five are too old
    assert [e.seq for e in outbox.pending(0, 100)] == [6, 7, 8, 9, 10, 11]
    assert outbox.stats().dropped_messages == 5


def test_the_cap_log_line_names_every_topic_it_dropped_not_only_telemetry(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [1_000_000.0]
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings(max_age_h=1.0), clock=lambda: now[0])
    fill(outbox, 2)
    outbox.append(lambda seq: message(seq), 0, topic="control")
    outbox.append(lambda seq: message(seq), 0, topic="events")
    now[0] += 3601
    with caplog.at_level(logging.WARNING, logger="gateway.mqtt.outbox"):
        outbox.append(lambda seq: message(seq), 3)
    [record] = [r for r in caplog.records if r.name == "gateway.mqtt.outbox"]
    assert "telemetry" not in record.getMessage(), "the message must not claim only telemetry was lost"
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["messages"] == 4 and fields["samples"] == 6 and fields["up_to_seq"] == 4
    assert fields["topics"] == "control:1,events:1,telemetry:2"


def test_a_failed_append_stores_nothing_and_uses_no_number(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings())
    fill(outbox, 1)

    def broken(seq: int) -> bytes:
        raise ValueError("encoder bug")

    with pytest.raises(ValueError):
        outbox.append(broken, 1)
    assert fill(outbox, 1) == [2]
    with sqlite3.connect(tmp_path / "outbox.sqlite") as reader:
        assert reader.execute("SELECT count(*) FROM outbox").fetchone()[0] == 2


def test_each_message_keeps_its_topic_and_all_topics_share_one_sequence(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxSettings())
    assert outbox.append(lambda seq: message(seq), 3) == 1
    assert outbox.append(lambda seq: message(seq), 1, topic="events") == 2
    assert outbox.append(lambda seq: message(seq), 3) == 3
    assert [(e.seq, e.topic) for e in outbox.pending(0, 10)] == [(1, "telemetry"), (2, "events"), (3, "telemetry")]


def test_an_outbox_written_before_topics_existed_replays_its_rows_as_telemetry(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
                             samples INTEGER NOT NULL, payload BLOB NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters VALUES ('dropped_messages', 0), ('dropped_samples', 0);
    """)
    old.execute("INSERT INTO outbox (created, samples, payload) VALUES (0, 3, ?)", (zlib.compress(message(1)),))
    old.commit()
    old.close()
    outbox = Outbox(path, OutboxSettings())
    assert [(e.seq, e.payload, e.topic) for e in outbox.pending(0, 10)] == [(1, message(1), "telemetry")]
    assert outbox.append(lambda seq: message(seq), 1, topic="events") == 2
