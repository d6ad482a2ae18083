"""Behavioural detection, engine level: every alert type fires in its scenario and benign traffic
stays quiet. Scenarios come from the simulator (``bench/behaviour_sim.py``) with a short learning
period: a realistic benign population (JWT users, anonymous browsers, NAT'd offices, probes), then
each attack in turn, injected into continuing benign traffic."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bench.behaviour_sim import ATTACKS, T0, Sim, benign_stream, build_world, scenario_name
from sensor.behaviour import ALERT_TYPES, BehaviourEngine
from sensor.behaviour.policy import bundled_behaviour_path, load_behaviour_policy

RATE = 8.0
LEARN = 900.0
QUIET = 900.0
SLOT = 120.0


def short_policy() -> Any:
    policy = load_behaviour_policy(bundled_behaviour_path())
    return msgspec.structs.replace(
        policy,
        learning=msgspec.structs.replace(policy.learning, seconds=600.0, requests=300),
        distinct=msgspec.structs.replace(policy.distinct, window_seconds=600.0),
    )


@pytest.fixture(scope="module")
def scenario_run() -> dict[str, Any]:
    sim = Sim(BehaviourEngine(short_policy()), build_world(seed=11, n_users=1500))
    sim.world.rate = RATE
    sim.feed(benign_stream(sim.world, T0, T0 + LEARN, RATE))
    sim.take()
    benign = sim.feed(benign_stream(sim.world, T0 + LEARN, T0 + LEARN + QUIET, RATE))
    sim.advance(T0 + LEARN + QUIET)
    quiet = [a for _, a in sim.take()]
    rows = {}
    t = T0 + LEARN + QUIET
    for alert_type, attack in ATTACKS:
        rows[scenario_name(alert_type, attack)] = sim.attack_slot(alert_type, attack, t, SLOT, RATE)
        t += SLOT
    return {"benign": benign, "quiet": quiet, "rows": rows, "engine": sim.engine}


def test_every_alert_type_has_a_scenario() -> None:
    assert {t for t, _ in ATTACKS} == set(ALERT_TYPES)


@pytest.mark.parametrize("scenario", [scenario_name(t, a) for t, a in ATTACKS])
def test_alert_fires_in_its_scenario_within_one_window(scenario_run: dict[str, Any], scenario: str) -> None:
    row = scenario_run["rows"][scenario]
    assert row["detected"], row
    assert row["delay_s"] is not None and row["delay_s"] <= 60.0, row  # one alert window
    assert row["false_alerts"] == 0, row  # nothing about benign clients while the attack runs


def test_benign_traffic_stays_quiet(scenario_run: dict[str, Any]) -> None:
    assert scenario_run["benign"] > 5000
    assert scenario_run["quiet"] == [], [(a.type, a.client, a.evidence) for a in scenario_run["quiet"]]


def test_no_engine_errors(scenario_run: dict[str, Any]) -> None:
    engine: BehaviourEngine = scenario_run["engine"]
    assert engine.counters.errors == 0
    assert engine.counters.groups_dropped == 0
