"""Part 11 controls on people (issue 15 item 6): password policy, user administration by a
user-administrator role kept apart from production, session idle time-out, training status.

21 CFR 11.10(d),(g),(i), 11.300(a),(b) [CFR11]; EU GMP Annex 11 §12. Every test tries to
break one rule: real SQLite stores (in a temp dir), the real HMI app over HTTP (TestClient),
the real ``cellctl`` entry point.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError

from aseptic_cell.auth import AuthError, PermissionDenied, UserDirectory, UsersFile, hash_password
from aseptic_cell.auth.admin import AdminRefused, UserAdmin
from aseptic_cell.auth.directory import PasswordChangeRequired
from aseptic_cell.auth.lockout import LoginGuard
from aseptic_cell.auth.policy import PasswordRejected
from aseptic_cell.hmi.app import create_app
from aseptic_cell.hmi.backend import CommandResult
from aseptic_cell.hmi.config import HmiConfig
from aseptic_cell.records import BatchRecord
from aseptic_cell.supervisor.signing import Signing, subject_hash

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "users.yaml"
FAST = 200_000  # the policy floor: keeps each PBKDF2 run short
PW = {"op1": "op1-demo-2026", "sup1": "sup1-demo-2026", "qa1": "qa1-demo-2026", "adm1": "adm1-demo-2026",
      "adm2": "adm2-demo-2026"}
T0 = 1_790_000_000.0
DAY = 86400.0
NEW_PW = "Fresh-start-77"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped users.yaml with fast hashes for the users these tests log in as, and a
    second administrator (adm2) so that one administrator can be administered by another."""
    data = yaml.safe_load(SHIPPED.read_text())
    data["policy"]["hash_iterations"] = FAST
    by_id = {u["id"]: u for u in data["users"]}
    by_id["adm2"] = {"id": "adm2", "full_name": "Second Admin (test)", "role": "user_admin",
                     "password_hash": ""}
    for uid, pw in PW.items():
        by_id[uid]["password_hash"] = hash_password(pw, iterations=FAST)
    data["users"] = list(by_id.values())
    d = tmp_path_factory.mktemp("cfg")
    (d / "users.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return d


def directory(config_dir: Path, clock: Clock, tmp_path: Path | None = None, **kw: Any) -> UserDirectory:
    d = UserDirectory.from_file(config_dir / "users.yaml", clock, **kw)
    if tmp_path is not None:  # the cell's shared stores in a directory (auth.db + users.db)
        d.guard = LoginGuard(tmp_path / "auth.db", d.config.policy, source="test")
    return d


def add_user(admin: UserAdmin, uid: str, role: str = "operator", pw: str = NEW_PW) -> None:
    admin.add("adm1", PW["adm1"], user_id=uid, full_name=f"{uid} (test)", role=role, initial_password=pw,
              reason="new starter")


# ---------------------------------------------------------------------------- 1. password policy
def test_new_password_must_meet_length_classes_and_not_reuse_the_last_n(config_dir: Path) -> None:
    d = directory(config_dir, Clock())
    assert d.config.policy.password_history == 5
    assert d.config.policy.min_character_classes == 3
    for bad, code in [("Sh0rt-1", "PASSWORD_TOO_SHORT"), ("onlylowercase", "PASSWORD_CLASSES"),
                      ("lowercase1234567", "PASSWORD_CLASSES"), ("X-op1-contains-9", "PASSWORD_CONTAINS_ID"),
                      (" Lead-space-99", "PASSWORD_WHITESPACE")]:
        with pytest.raises(PasswordRejected) as exc:
            d.change_password("op1", PW["op1"], bad)
        assert exc.value.code == code, bad
    assert d.authenticate("op1", PW["op1"]).id == "op1"  # a refused change changes nothing
    # P0 .. P5 in a row: the last five (P5 .. P1) are refused, P0 (the sixth) is allowed again
    chain = [PW["op1"]] + [f"Rotation-{i}-pass" for i in range(6)]
    for old, new in zip(chain, chain[1:], strict=False):
        d.change_password("op1", old, new)
    for reused in chain[-1:1:-1]:  # the current one and the four before it
        with pytest.raises(PasswordRejected) as exc:
            d.change_password("op1", chain[-1], reused)
        assert exc.value.code == "PASSWORD_REUSED", reused
    d.change_password("op1", chain[-1], chain[1])
    assert d.authenticate("op1", chain[1]).id == "op1"


def test_expired_password_can_neither_log_in_nor_sign_only_be_changed(config_dir: Path,
                                                                      tmp_path: Path) -> None:
    clock = Clock()
    with BatchRecord(tmp_path / "r.db", clock) as record:
        d = directory(config_dir, clock, record=record)
        signing = Signing(d, record)
        rule = d.authorize("sup1", "batch.restart")
        clock.t = T0 + 91 * DAY  # the policy's 90 days are over
        with pytest.raises(PasswordChangeRequired) as exc:
            d.authenticate("sup1", PW["sup1"])
        assert exc.value.code == "PASSWORD_EXPIRED"
        sig, refusal = signing.sign_if_required("sup1", rule, password=PW["sup1"], meaning="responsibility",
                                                action="batch.restart", subject=subject_hash({"b": 1}),
                                                batch_id="B1", reason="restart")
        assert sig is None and refusal is not None and refusal.code == "SIGNATURE"
        assert "PASSWORD_EXPIRED" in refusal.reason
        assert not [e for e in record.entries() if e.kind == "signature"]  # nothing signed
        d.change_password("sup1", PW["sup1"], NEW_PW)
        assert d.authenticate("sup1", NEW_PW).id == "sup1"
        sig, refusal = signing.sign_if_required("sup1", rule, password=NEW_PW, meaning="responsibility",
                                                action="batch.restart", subject=subject_hash({"b": 1}),
                                                batch_id="B1", reason="restart")
        assert refusal is None and sig is not None
        actions = [e.action for e in record.entries() if e.kind == "auth"]
        assert "auth.refused_password_expired" in actions and "auth.password_changed" in actions


def test_initial_and_reset_passwords_must_be_changed_at_first_use(config_dir: Path) -> None:
    d = directory(config_dir, Clock())
    admin = UserAdmin(d)
    add_user(admin, "nu1")
    with pytest.raises(PasswordChangeRequired) as exc:
        d.authenticate("nu1", NEW_PW)
    assert exc.value.code == "PASSWORD_CHANGE_REQUIRED"
    with pytest.raises(PasswordRejected):  # the initial password cannot be "changed" to itself
        d.change_password("nu1", NEW_PW, NEW_PW)
    d.change_password("nu1", NEW_PW, "Own-choice-123")
    assert d.authenticate("nu1", "Own-choice-123").id == "nu1"
    admin.reset_password("adm1", PW["adm1"], user_id="nu1", new_password="Temp-reset-456", reason="forgotten")
    with pytest.raises(PasswordChangeRequired) as exc:
        d.authenticate("nu1", "Temp-reset-456")
    assert exc.value.code == "PASSWORD_CHANGE_REQUIRED"
    with pytest.raises(AuthError):  # the old password is gone
        d.authenticate("nu1", "Own-choice-123")


# ---------------------------------------------------------------------------- 2. administration
def test_admin_role_is_kept_apart_from_production_roles_in_the_config() -> None:
    base = yaml.safe_load(SHIPPED.read_text())
    UsersFile.model_validate(base)
    for action, roles, sig in [("batch.release", ["qa", "user_admin"], True),  # admin approving batches
                               ("batch.start", ["operator", "user_admin"], False),
                               ("user.add", ["user_admin", "qa"], True),  # production role administering
                               ("user.disable", ["user_admin"], False)]:  # unsigned administration
        data = json.loads(json.dumps(base))
        data["permissions"][action] = {**data["permissions"][action], "roles": roles, "signature": sig,
                                       "meaning": data["permissions"][action].get("meaning") or "responsibility"}
        with pytest.raises(ValidationError, match="user_admin"):
            UsersFile.model_validate(data)


def test_admin_cannot_approve_a_batch_nor_cross_into_a_production_role(config_dir: Path) -> None:
    d = directory(config_dir, Clock())
    signing = Signing(d, None)
    for action in ("batch.release", "batch.qa_release", "batch.start", "step.verify", "record.review"):
        rule, refusal = signing.authorize("adm1", action)
        assert rule is None and refusal is not None and refusal.code == "PERMISSION", action
    with pytest.raises(PermissionDenied):
        d.sign("adm1", PW["adm1"], "approval", "a" * 64, action="batch.release")
    admin = UserAdmin(d)
    for target, role in [("op1", "user_admin"), ("adm2", "qa")]:
        with pytest.raises(AdminRefused) as exc:
            admin.set_role("adm1", PW["adm1"], user_id=target, role=role, reason="try")
        assert exc.value.code == "ROLE_SEPARATION"
    with pytest.raises(AdminRefused) as exc:  # nobody administers their own account
        admin.qualify("adm1", PW["adm1"], user_id="adm1", classes=["batch"], until=T0 + DAY, reason="self")
    assert exc.value.code == "SELF_ADMINISTRATION"
    for prod in ("qa1", "sup1"):  # and no production role administers users
        with pytest.raises(PermissionDenied):
            admin.disable(prod, PW[prod], user_id="op1", reason="try")
    assert not d.get("op1").disabled
    admin.set_role("adm1", PW["adm1"], user_id="op1", role="supervisor", reason="promoted")
    assert d.get("op1").role == "supervisor" and d.authorize("op1", "batch.stop")


def test_disabled_user_cannot_log_in_and_users_are_never_deleted(config_dir: Path, tmp_path: Path) -> None:
    clock = Clock()
    d = directory(config_dir, clock, tmp_path)
    hmi_side = directory(config_dir, clock, tmp_path)  # another interface on the same stores
    UserAdmin(d).disable("adm1", PW["adm1"], user_id="op1", reason="left the site")
    for side in (d, hmi_side):
        with pytest.raises(AuthError, match="disabled"):
            side.authenticate("op1", PW["op1"])
        with pytest.raises(PermissionDenied):
            side.authorize("op1", "batch.start")
    with pytest.raises(AdminRefused) as exc:  # the id is never reused, whatever its case
        UserAdmin(hmi_side).add("adm1", PW["adm1"], user_id="OP1", full_name="Other", role="operator",
                                initial_password=NEW_PW, reason="reuse")
    assert exc.value.code == "USER_EXISTS"
    con = sqlite3.connect(tmp_path / "users.db")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        con.execute("DELETE FROM users WHERE id = 'op1'")
    con.close()
    # a restart re-reads users.yaml (op1 enabled there): the live store wins, op1 stays disabled
    assert directory(config_dir, clock, tmp_path).get("op1").disabled
    UserAdmin(hmi_side).enable("adm1", PW["adm1"], user_id="op1", reason="came back")
    assert d.authenticate("op1", PW["op1"]).id == "op1"


def test_every_admin_change_is_audited_and_signed(config_dir: Path, tmp_path: Path) -> None:
    clock = Clock()
    with BatchRecord(tmp_path / "r.db", clock) as record:
        d = directory(config_dir, clock, record=record)
        admin = UserAdmin(d)
        seeded = len(d.store.audit())
        add_user(admin, "nu2")
        admin.disable("adm1", PW["adm1"], user_id="nu2", reason="r1")
        admin.enable("adm1", PW["adm1"], user_id="nu2", reason="r2")
        admin.reset_password("adm1", PW["adm1"], user_id="nu2", new_password="Temp-reset-456", reason="r3")
        admin.set_role("adm1", PW["adm1"], user_id="nu2", role="supervisor", reason="r4")
        admin.qualify("adm1", PW["adm1"], user_id="nu2", classes=["batch", "step"], until=T0 + 30 * DAY,
                      reason="r5")
        rows = d.store.audit()[seeded:]
        assert [r["action"] for r in rows] == ["user.add", "user.disable", "user.enable", "user.reset_password",
                                             "user.set_role", "user.qualify"]
        import hashlib

        for r in rows:
            sig = r["signature"]
            assert sig["user_id"] == "adm1" and sig["meaning"] == "responsibility" and r["target"] == "nu2"
            assert hashlib.sha256(sig["signed_content"].encode()).hexdigest() == sig["record_hash"]
            assert json.loads(sig["signed_content"])["action"] == r["action"]
            assert "password" not in json.dumps(r["detail"]).lower()
        assert d.store.verify_audit() == []
        # the same changes, signed, in the batch record (the directory's record path)
        sigs = [e for e in record.entries() if e.kind == "signature" and e.action.startswith("user.")]
        assert [e.action for e in sigs] == [r["action"] for r in rows]
        assert all(e.actor == "adm1" and e.payload["meaning"] == "responsibility" for e in sigs)
        # the trail cannot be edited, and an edit behind the triggers' back is detected
        con = d.store._con
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("UPDATE admin_audit SET target = 'op1' WHERE id = ?", (rows[1]["id"],))
        con.execute("DROP TRIGGER admin_audit_no_update")
        con.execute("UPDATE admin_audit SET target = 'op1' WHERE id = ?", (rows[1]["id"],))
        assert any("hash mismatch" in p for p in d.store.verify_audit())
    # without a batch record (HMI, cellctl): the shared security log the supervisor copies
    (tmp_path / "x").mkdir()
    d2 = directory(config_dir, clock, tmp_path / "x")
    UserAdmin(d2).disable("adm1", PW["adm1"], user_id="qa1", reason="audit path")
    ev = [e for e in d2.guard.events_after(0) if e["action"] == "user.disable"]
    assert ev and ev[0]["user"] == "qa1" and ev[0]["detail"]["signature"]["user_id"] == "adm1"


# ---------------------------------------------------------------------------- 4. qualification
def test_unqualified_or_expired_user_is_refused_with_a_precise_code(config_dir: Path) -> None:
    clock = Clock()
    d = directory(config_dir, clock)
    signing = Signing(d, None)
    assert signing.authorize("op1", "batch.start")[1] is None  # demo users are qualified by default
    admin = UserAdmin(d)
    add_user(admin, "nu3")
    d.change_password("nu3", NEW_PW, "Own-choice-123")
    with pytest.raises(PermissionDenied) as exc:
        d.authorize("nu3", "batch.start")
    assert exc.value.code == "NOT_QUALIFIED"
    rule, refusal = signing.authorize("nu3", "batch.start")  # the supervisor's own check
    assert rule is None and refusal is not None and refusal.reason.startswith("NOT_QUALIFIED")
    assert d.authorize("nu3", "batch.hold")  # a safe hold is never refused for lack of training
    admin.qualify("adm1", PW["adm1"], user_id="nu3", classes=["batch"], until=T0 + 10 * DAY, reason="course")
    assert d.authorize("nu3", "batch.start").roles
    with pytest.raises(PermissionDenied) as exc:  # qualified for batch, not for glove
        d.authorize("nu3", "glove.use")
    assert exc.value.code == "NOT_QUALIFIED"
    clock.t = T0 + 11 * DAY
    with pytest.raises(PermissionDenied) as exc:
        d.authorize("nu3", "batch.start")
    assert exc.value.code == "QUALIFICATION_EXPIRED"


# ---------------------------------------------------------------------------- HMI
class WallClock:
    def now(self) -> float:
        return time.time()


class Backend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, hub: Any) -> None:
        hub.publish_state(self.snapshot())

    def stop(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"devices": {}, "batch": {"batch_id": "B1", "state": "HELD", "record_path": ""}}

    def trends(self) -> dict[str, Any]:
        return {}

    def record_path(self) -> str:
        return ""

    def batch_start(self, **kw: Any) -> CommandResult:
        self.calls.append(("batch_start", kw))
        return CommandResult(True, "OK", "done", state="RUNNING")

    def batch_command(self, command: str, **kw: Any) -> CommandResult:
        self.calls.append((command, kw))
        return CommandResult(True, "OK", "done", state="RUNNING")


def login(c: TestClient, user: str, pw: str | None = None) -> dict[str, str]:
    r = c.post("/api/login", json={"user": user, "password": pw or PW[user]})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def sig(user: str, pw: str | None = None) -> dict[str, str]:
    return {"user": user, "password": pw or PW[user], "meaning": "responsibility"}


@pytest.fixture
def hmi(config_dir: Path, tmp_path: Path) -> Any:
    d = directory(config_dir, WallClock(), tmp_path)
    backend = Backend()
    app = create_app(HmiConfig(session_idle_timeout_s=600.0), backend, d)
    with TestClient(app, base_url="http://127.0.0.1:8700") as c:
        yield c, app, backend, d


def test_idle_session_cannot_do_a_signed_action_until_logged_in_again(hmi: Any) -> None:
    c, app, backend, _d = hmi
    h = login(c, "sup1")
    now = [1000.0]
    app.state.sessions.clock = lambda: now[0]
    h = login(c, "sup1")  # a session on the test's clock
    now[0] += 601.0  # idle longer than the 600 s time-out
    r = c.post("/api/batch/restart", json={"reason": "x", "signature": sig("sup1")}, headers=h)
    assert r.status_code == 401 and r.json()["error"]["code"] == "SESSION_EXPIRED"
    assert backend.calls == []  # nothing reached the cell
    r = c.post("/api/batch/restart", json={"reason": "x", "signature": sig("sup1")}, headers=h)
    assert r.status_code == 401  # the session is gone, not revived
    h = login(c, "sup1")
    r = c.post("/api/batch/restart", json={"reason": "x", "signature": sig("sup1")}, headers=h)
    assert r.status_code == 200, r.text
    assert [name for name, _ in backend.calls] == ["restart"]


def test_hmi_user_administration_for_the_admin_role_only(hmi: Any) -> None:
    c, _app, backend, d = hmi
    page = c.get("/static/admin.html")
    assert page.status_code == 200 and "/static/admin.js" in page.text
    assert c.get("/static/admin.js").status_code == 200
    h = login(c, "qa1")  # a production role sees and changes nothing
    assert c.get("/api/admin/users").json()["error"]["code"] == "ROLE_FORBIDDEN"
    r = c.post("/api/admin/users/op1/disable", json={"reason": "x", "signature": sig("qa1")}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "ROLE_FORBIDDEN"
    c.post("/api/logout", headers=h)
    h = login(c, "adm1")
    assert {u["id"] for u in c.get("/api/admin/users").json()["users"]} >= {"op1", "qa1", "adm1", "op2"}
    r = c.post("/api/admin/users/op1/disable", json={"reason": "x", "signature": sig("adm2")}, headers=h)
    assert r.json()["error"]["code"] == "SIGNER_MISMATCH"
    r = c.post("/api/admin/users/op1/disable", json={"reason": "x", "signature": sig("adm1", "wrong-pass-1")},
               headers=h)
    assert r.json()["error"]["code"] == "SIGNATURE_REFUSED"
    r = c.post("/api/admin/users", headers=h, json={
        "user_id": "nu4", "full_name": "New Four", "role": "operator", "initial_password": NEW_PW,
        "reason": "new starter", "signature": sig("adm1")})
    assert r.status_code == 200, r.text
    assert r.json()["signed"]["user"] == "adm1"
    r = c.post("/api/admin/users/op1/role", headers=h, json={"role": "user_admin", "reason": "x",
                                                              "signature": sig("adm1")})
    assert r.json()["error"].get("upstream_code") == "ROLE_SEPARATION", r.text
    r = c.post("/api/admin/users/op1/disable", json={"reason": "left", "signature": sig("adm1")}, headers=h)
    assert r.status_code == 200
    assert c.post("/api/login", json={"user": "op1", "password": PW["op1"]}).json()["error"]["code"] == \
        "LOGIN_FAILED"
    r = c.post("/api/batch/abort", json={"reason": "x", "signature": sig("adm1")}, headers=h)
    assert r.json()["error"]["code"] == "ROLE_FORBIDDEN" and backend.calls == []  # no production action
    audit = c.get("/api/admin/audit").json()
    assert audit["chain_ok"] and [e["action"] for e in audit["entries"]][-2:] == ["user.add", "user.disable"]
    # the new user: initial password must be changed (no session needed), then logs in
    r = c.post("/api/login", json={"user": "nu4", "password": NEW_PW})
    assert r.json()["error"]["code"] == "LOGIN_FAILED" and "PASSWORD_CHANGE_REQUIRED" in r.json()["error"]["detail"]
    r = c.post("/api/password", json={"user": "nu4", "old_password": NEW_PW, "new_password": NEW_PW})
    assert r.json()["error"]["upstream_code"] == "PASSWORD_REUSED"
    r = c.post("/api/password", json={"user": "nu4", "old_password": NEW_PW, "new_password": "Own-choice-123"})
    assert r.status_code == 200, r.text
    h4 = login(c, "nu4", "Own-choice-123")
    r = c.post("/api/batch/start", json={"recipe_id": "R", "batch_id": "B9"}, headers=h4)
    assert r.status_code == 403 and "NOT_QUALIFIED" in r.json()["error"]["detail"]  # no training yet
    assert backend.calls == []


# ---------------------------------------------------------------------------- CLI
def test_cellctl_users_add_list_and_passwd(config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from aseptic_cell.cli import main

    monkeypatch.setenv("ASEPTIC_CELL_SECURITY_DIR", str(tmp_path))
    cfg = ["users", "--config", str(config_dir), "--stdin"]

    def run(args: list[str], stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(cfg + args)

    assert run(["add", "nu5", "--name", "Five", "--role", "operator", "--admin", "adm1", "--reason", "hired"],
               f"{PW['adm1']}\n{NEW_PW}\n") == 0
    assert "signed by" in capsys.readouterr().out
    assert run(["add", "nu6", "--name", "Six", "--role", "operator", "--admin", "qa1", "--reason", "x"],
               f"{PW['qa1']}\n{NEW_PW}\n") == 1  # a production role may not
    assert "PERMISSION" in capsys.readouterr().err
    assert run(["passwd", "nu5"], f"{NEW_PW}\nOwn-choice-123\n") == 0
    assert "password of nu5 changed" in capsys.readouterr().out
    assert run(["list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["nu5"]["must_change_password"] is False and "nu6" not in rows
    assert run(["audit"]) == 0 and "audit chain OK" in capsys.readouterr().out
    assert (tmp_path / "users.db").is_file()


def test_a_permission_class_added_later_qualifies_seeded_users_once_not_withdrawn_ones(
        config_dir: Path, tmp_path: Path) -> None:
    """The file seeds users once; a class new to a seeded user's role (e.g. a QA permission
    added later) is granted once, audited; a withdrawn qualification is never given back."""
    clock = Clock()
    d = directory(config_dir, clock, tmp_path)
    admin = UserAdmin(d)
    admin.qualify("adm1", PW["adm1"], user_id="op1", classes=["glove"], until=T0 - 1.0, reason="failed audit")
    add_user(admin, "nu7")
    data = yaml.safe_load((config_dir / "users.yaml").read_text())
    data["permissions"]["sample.take"] = {"roles": ["operator"]}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "users.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    d2 = directory(tmp_path / "cfg", clock, tmp_path)  # a restart with the new file
    assert d2.authorize("op1", "sample.take")  # new class, granted once
    with pytest.raises(PermissionDenied) as exc:
        d2.authorize("op1", "glove.use")  # withdrawn: stays withdrawn
    assert exc.value.code == "QUALIFICATION_EXPIRED"
    d2.change_password("nu7", NEW_PW, "Own-choice-123")
    with pytest.raises(PermissionDenied) as exc:
        d2.authorize("nu7", "sample.take")  # an administrator's user: qualified by the administrator only
    assert exc.value.code == "NOT_QUALIFIED"
    assert [r["target"] for r in d2.store.audit() if r["action"] == "user.seed_qualification"] == ["op1", "op2"]

