"""One permission model for the operator actions on alarms (issue 13 item 20): users.yaml lets
operators unshelve; the supervisor and the HMI both authorise through
aseptic_cell/alarms/permissions.py, so an operator's unshelve is accepted everywhere, and a
role users.yaml does not grant is refused everywhere."""

from __future__ import annotations

import py_trees
import pytest

from aseptic_cell.alarms.permissions import ALARM_PERMISSIONS, shelve_permission
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.supervisor.runner import InProcessRun


@pytest.fixture(autouse=True)
def _clean_blackboard():
    yield
    py_trees.blackboard.Blackboard.clear()


@pytest.fixture(scope="module")
def cfg():
    return load_config(default_config_dir())


def test_every_alarm_action_names_a_permission_of_users_yaml(cfg):
    perms = cfg.users.permissions
    for action, perm in ALARM_PERMISSIONS.items():
        assert perm in perms, (action, perm)
    assert shelve_permission(0.0) == "alarm.unshelve" and shelve_permission(60.0) == "alarm.shelve"
    assert "operator" in perms["alarm.unshelve"].roles and "operator" not in perms["alarm.shelve"].roles


def test_an_operator_unshelves_what_a_supervisor_shelved(cfg):
    run = InProcessRun(cfg)
    sup = run.sup
    sup.alarms.raise_("ISO1_DP_HIGH", message="test")
    out = sup.shelve_alarm("ISO1_DP_HIGH", "sup1", "sup1-demo-2026", "responsibility", "sensor swap", 3600.0)
    assert out.accepted, out.reason
    assert sup.alarms.state("ISO1_DP_HIGH").value == "SHELVED"
    denied = sup.shelve_alarm("ISO1_DP_HIGH", "op1", "op1-demo-2026", "responsibility", "op tries", 3600.0)
    assert not denied.accepted  # an operator may not shelve (users.yaml alarm.shelve)
    qa = sup.shelve_alarm("ISO1_DP_HIGH", "qa1", "", "", "qa tries", 0.0)
    assert not qa.accepted and "alarm.unshelve" in qa.reason  # QA holds no alarm.unshelve
    out = sup.shelve_alarm("ISO1_DP_HIGH", "op1", "", "", "sensor back", 0.0)
    assert out.accepted, out.reason
    assert sup.alarms.state("ISO1_DP_HIGH").value == "UNACK"
    assert [a["event"] for a in sup.alarm_log if a["alarm"] == "ISO1_DP_HIGH"][-2:] == ["unshelved", "raised"]
