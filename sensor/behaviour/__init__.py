"""Behavioural detection: statistical models per endpoint and client, and the behavioural alerts.

``BehaviourEngine.from_policies(dir)`` -> ``observe(obs, ex, leaves)`` per exchange -> ``drain(now)``
about once a second for grouped ``AlertEvent`` s. See ``engine.py`` for the models and their caps.
"""

from sensor.behaviour.engine import ALERT_TYPES, BehaviourCounters, BehaviourEngine
from sensor.behaviour.policy import BehaviourError, BehaviourPolicy, load_behaviour_policy

__all__ = [
    "ALERT_TYPES",
    "BehaviourCounters",
    "BehaviourEngine",
    "BehaviourError",
    "BehaviourPolicy",
    "load_behaviour_policy",
]
