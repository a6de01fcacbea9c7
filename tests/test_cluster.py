"""Several Kamailio nodes: who emits the record of an answered call whose replicated entry
expires (routing/proxy/cluster.py), and the owner kept with the entry (call_record)."""

from __future__ import annotations

from routing.proxy import call_record
from routing.proxy.cluster import alive, emits_expired

NOW = 1_000_000.0


def test_one_node_or_an_entry_without_owner_always_emits() -> None:
    assert emits_expired("", "", {}, NOW)
    assert emits_expired("", "2", {"1": NOW}, NOW)  # kept before there were owners
    assert emits_expired("2", "", {}, NOW)


def test_the_owner_emits_and_nobody_else_while_it_lives() -> None:
    beats = {"1": NOW - 1, "2": NOW, "3": NOW - 2}
    assert emits_expired("2", "2", beats, NOW)
    assert not emits_expired("2", "1", beats, NOW)
    assert not emits_expired("2", "3", beats, NOW)


def test_a_dead_owners_calls_go_to_the_lowest_live_node_only() -> None:
    beats = {"1": NOW - 30, "2": NOW - 1, "3": NOW}  # node 1 silent for 30 s: dead
    emitters = [me for me in ("2", "3") if emits_expired("1", me, beats, NOW)]
    assert emitters == ["2"]
    assert alive(beats, NOW) == ["2", "3"]


def test_node_ids_order_as_numbers() -> None:
    beats = {"10": NOW, "9": NOW}
    assert alive(beats, NOW) == ["9", "10"]
    assert emits_expired("1", "9", beats, NOW) and not emits_expired("1", "10", beats, NOW)


def test_a_node_that_has_not_seen_its_own_heartbeat_yet_still_counts_itself() -> None:
    assert emits_expired("3", "1", {"3": NOW - 60}, NOW)


def test_the_owner_round_trips_and_one_node_keeps_todays_format() -> None:
    answered = call_record.answered(12.5, 1, '{"acct":"a|b"}')
    assert call_record.kept("tag1", answered) == f"tag1|{answered}"  # one node: unchanged
    owned = call_record.kept("tag1", answered, "3")
    assert owned == f"3/tag1|{answered}"
    assert call_record.unkeep_owned(owned) == ("3", "tag1", answered)
    assert call_record.unkeep(owned) == ("tag1", answered)
    assert call_record.unkeep_owned(f"tag1|{answered}") == ("", "tag1", answered)
    # a broken to-tag cannot pose as an owner
    assert call_record.unkeep_owned(call_record.kept("x/y", answered)) == ("", "xy", answered)
