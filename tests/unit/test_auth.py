"""Users, roles, permissions and e-signatures (Part 11 §11.10(d)(g), §11.50, §11.70, §11.200, §11.300)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from aseptic_cell.auth import (
    GENERIC_FAILURE,
    MEANINGS,
    SIGNED_ACTIONS,
    AuthError,
    PermissionDenied,
    UserDirectory,
    UsersFile,
    UsersFileError,
    hash_password,
    record_signature,
    verify_password,
)
from aseptic_cell.auth.__main__ import main as auth_cli
from aseptic_cell.records import BatchRecord

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "users.yaml"
DEMO = {"op1": "op1-demo-2026", "sup1": "sup1-demo-2026", "qa1": "qa1-demo-2026", "eng1": "eng1-demo-2026"}
T0 = 1_790_000_000.0
FAST = 200_000  # the policy floor, keeps the tests quick


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def shipped_directory() -> UserDirectory:
    """One directory for the shipped file: its 600 000-iteration hashes are slow on purpose."""
    return UserDirectory.from_file(SHIPPED, FakeClock())


@pytest.fixture(scope="module")
def shipped_data() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


@pytest.fixture(scope="module")
def fast_hashes() -> dict[str, str]:
    return {u: hash_password(pw, iterations=FAST) for u, pw in {**DEMO, "admin": "admin-pass-123"}.items()}


def _test_file(tmp_path: Path, shipped_data: dict, fast_hashes: dict, *, users=None, policy=None) -> Path:
    data = dict(shipped_data)
    data["policy"] = {
        **shipped_data["policy"],
        "max_failed_attempts": 3,
        "failure_window_s": 600.0,
        "lockout_s": 900.0,
        **(policy or {}),
    }
    roles = {"op1": "operator", "sup1": "supervisor", "qa1": "qa", "eng1": "engineer"}
    data["users"] = (
        users
        if users is not None
        else [
            {"id": u, "full_name": f"{u.upper()} Person", "role": r, "password_hash": fast_hashes[u]}
            for u, r in roles.items()
        ]
    )
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory(tmp_path, shipped_data, fast_hashes, clock) -> UserDirectory:
    return UserDirectory.from_file(_test_file(tmp_path, shipped_data, fast_hashes), clock)


# ----------------------------------------------------------------------- shipped file
def test_shipped_demo_users_log_in_with_the_documented_passwords(shipped_directory):
    d = shipped_directory
    for uid, pw in DEMO.items():
        user = d.authenticate(uid, pw)
        assert user.id == uid and user.full_name
    assert {d.get(u).role for u in DEMO} == {"operator", "supervisor", "qa", "engineer"}
    with pytest.raises(AuthError, match="disabled"):
        d.authenticate("op2", "op2-demo-2026")


def test_shipped_file_stores_hashes_not_plaintext(shipped_data):
    for u in shipped_data["users"]:
        h = u["password_hash"]
        assert h.startswith("pbkdf2_sha256$") and int(h.split("$")[1]) >= 200_000
        assert DEMO.get(u["id"], "op2-demo-2026") not in h
    assert "admin" not in {u["id"] for u in shipped_data["users"]}  # no default admin


def test_admin_with_any_password_is_refused_by_the_shipped_directory(shipped_directory):
    assert shipped_directory.get("admin") is None
    with pytest.raises(AuthError) as exc:
        shipped_directory.authenticate("admin", "admin")
    assert exc.value.reason == GENERIC_FAILURE


# ----------------------------------------------------------------------- authentication
def test_right_password_accepted_wrong_refused(directory):
    assert directory.authenticate("sup1", DEMO["sup1"]).role == "supervisor"
    with pytest.raises(AuthError) as exc:
        directory.authenticate("sup1", DEMO["sup1"] + "x")
    assert exc.value.reason == GENERIC_FAILURE


def test_unknown_user_gets_the_same_message_as_a_wrong_password(directory):
    with pytest.raises(AuthError) as wrong:
        directory.authenticate("op1", "nope-nope-nope")
    with pytest.raises(AuthError) as unknown:
        directory.authenticate("ghost", "nope-nope-nope")
    assert str(wrong.value) == str(unknown.value) == GENERIC_FAILURE


def test_a_user_named_admin_is_not_special(tmp_path, shipped_data, fast_hashes, clock):
    users = [
        {"id": "admin", "full_name": "A Person", "role": "operator", "password_hash": fast_hashes["admin"]}
    ]
    d = UserDirectory.from_file(_test_file(tmp_path, shipped_data, fast_hashes, users=users), clock)
    admin = d.authenticate("admin", "admin-pass-123")
    with pytest.raises(PermissionDenied, match="role 'operator' may not perform 'batch.abort'"):
        d.authorize(admin, "batch.abort")
    with pytest.raises(AuthError):
        d.authenticate("admin", "admin")


def test_lockout_after_n_failures_then_expiry(directory, clock):
    for _ in range(3):
        with pytest.raises(AuthError, match="invalid"):
            directory.authenticate("op1", "bad-password-1")
    assert directory.is_locked("op1")
    with pytest.raises(AuthError, match="locked"):
        directory.authenticate("op1", DEMO["op1"])  # even the right password
    clock.t += 901.0
    assert directory.authenticate("op1", DEMO["op1"]).id == "op1"


def test_failures_outside_the_window_do_not_lock(directory, clock):
    for _ in range(2):
        with pytest.raises(AuthError):
            directory.authenticate("op1", "bad-password-1")
    clock.t += 601.0
    with pytest.raises(AuthError, match="invalid"):
        directory.authenticate("op1", "bad-password-1")
    assert not directory.is_locked("op1")
    assert directory.authenticate("op1", DEMO["op1"]).id == "op1"


def test_unknown_ids_lock_too_and_unlock_needs_permission(directory):
    for _ in range(3):
        with pytest.raises(AuthError):
            directory.authenticate("ghost", "x")
    with pytest.raises(AuthError, match="locked"):
        directory.authenticate("ghost", "x")  # no difference between known and unknown ids
    for _ in range(3):
        with pytest.raises(AuthError):
            directory.authenticate("eng1", "x")
    op = directory.get("op1")
    with pytest.raises(PermissionDenied, match="user.unlock"):
        directory.unlock("eng1", by=op)
    directory.unlock("eng1", by=directory.get("sup1"))
    assert directory.authenticate("eng1", DEMO["eng1"]).id == "eng1"


def test_failed_logins_and_lockouts_are_recorded_without_the_password(
    tmp_path, shipped_data, fast_hashes, clock
):
    with BatchRecord(tmp_path / "r.db", clock) as rec:
        d = UserDirectory.from_file(_test_file(tmp_path, shipped_data, fast_hashes), clock, record=rec)
        for _ in range(3):
            with pytest.raises(AuthError):
                d.authenticate("op1", "secret-guess-42")
        entries = rec.entries(kinds=["auth"])
        assert [e.action for e in entries] == ["auth.failed"] * 3 + ["auth.lockout"]
        assert all(e.payload["user_id"] == "op1" for e in entries)
        assert "secret-guess-42" not in (tmp_path / "r.db").read_bytes().decode("latin-1")


# ----------------------------------------------------------------------- the file model
def test_model_rejects_plaintext_duplicate_ids_and_unsigned_critical_actions(shipped_data, fast_hashes):
    base = {"policy": shipped_data["policy"], "permissions": shipped_data["permissions"]}
    plain = {
        **base,
        "users": [{"id": "op1", "full_name": "x", "role": "operator", "password_hash": "hunter2"}],
    }
    with pytest.raises(ValidationError, match="pbkdf2_sha256"):
        UsersFile.model_validate(plain)
    u = {"id": "op1", "full_name": "x", "role": "operator", "password_hash": fast_hashes["op1"]}
    with pytest.raises(ValidationError, match="listed twice"):
        UsersFile.model_validate({**base, "users": [u, {**u, "id": "OP1"}]})
    perms = dict(shipped_data["permissions"])
    perms["batch.abort"] = {"roles": ["supervisor"], "signature": False}
    with pytest.raises(ValidationError, match="batch.abort.*e-signature"):
        UsersFile.model_validate({**base, "permissions": perms, "users": [u]})
    with pytest.raises(ValidationError, match="role"):
        UsersFile.model_validate({**base, "users": [{**u, "role": "root"}]})
    weak = hash_password("op1-demo-2026", iterations=FAST)
    with pytest.raises(ValidationError, match="iterations"):
        UsersFile.model_validate(
            {
                **base,
                "policy": {**base["policy"], "min_iterations": 600_000},
                "users": [{**u, "password_hash": weak}],
            }
        )


def test_malformed_file_is_reported_with_its_name(tmp_path, clock):
    bad = tmp_path / "users.yaml"
    bad.write_text("users: [\n")
    with pytest.raises(UsersFileError, match="users.yaml"):
        UserDirectory.from_file(bad, clock)


def test_hash_password_salts_and_refuses_weak_settings():
    a, b = hash_password("same-password", iterations=FAST), hash_password("same-password", iterations=FAST)
    assert a != b and verify_password("same-password", a) and verify_password("same-password", b)
    with pytest.raises(ValueError):
        hash_password("x", iterations=1000)
    with pytest.raises(ValueError):
        hash_password("")


# ----------------------------------------------------------------------- authorisation
def test_role_without_permission_is_refused_naming_role_and_action(directory):
    op = directory.authenticate("op1", DEMO["op1"])
    with pytest.raises(PermissionDenied) as exc:
        directory.authorize(op, "batch.release")
    assert "role 'operator'" in exc.value.reason and "'batch.release'" in exc.value.reason
    assert exc.value.role == "operator" and exc.value.action == "batch.release"
    assert directory.authorize(op, "batch.hold").signature is False
    with pytest.raises(PermissionDenied, match="not in the permission catalogue"):
        directory.authorize(op, "self.destruct")


def test_signature_requirements_in_the_catalogue(directory):
    for action in SIGNED_ACTIONS:
        assert directory.requires_signature(action), action
    assert not directory.requires_signature("alarm.ack")
    assert directory.permissions["override"].meaning == "override justification"


# ----------------------------------------------------------------------- e-signatures
def test_signature_requires_re_entering_the_password(directory):
    h = "ab" * 32
    with pytest.raises(AuthError):
        directory.sign("qa1", "", "approval", h)
    with pytest.raises(AuthError):
        directory.sign("qa1", DEMO["sup1"], "approval", h)


def test_signature_carries_name_role_time_meaning_and_record_hash(directory, clock):
    clock.t = T0 + 42.0
    h = "0123456789abcdef" * 4
    sig = directory.sign("qa1", DEMO["qa1"], "approval", h, action="batch.release")
    assert (sig.user_id, sig.full_name, sig.role) == ("qa1", "QA1 Person", "qa")
    assert sig.meaning == "approval" and sig.record_hash == h and sig.action == "batch.release"
    assert sig.signed_at == T0 + 42.0 and sig.signed_at_iso.endswith("+00:00")
    assert "QA1 Person" in sig.manifest() and "APPROVAL" in sig.manifest()


def test_signature_meaning_from_the_pick_list_and_a_real_hash(directory):
    assert "approval" in MEANINGS and "override justification" in MEANINGS
    with pytest.raises(ValueError, match="meaning"):
        directory.sign("qa1", DEMO["qa1"], "because", "ab" * 32)
    with pytest.raises(ValueError, match="SHA-256"):
        directory.sign("qa1", DEMO["qa1"], "approval", "not-a-hash")


def test_signing_for_an_action_checks_the_role(directory):
    with pytest.raises(PermissionDenied, match="role 'operator' may not perform 'override'"):
        directory.sign("op1", DEMO["op1"], "override justification", "ab" * 32, action="override")


def test_signature_lands_in_the_record_linked_to_the_signed_entry(tmp_path, directory, clock):
    with BatchRecord(tmp_path / "r.db", clock) as rec:
        summary = rec.append(
            "note", batch_id="B-9", actor="system", action="batch.summary", payload={"result": "complete"}
        )
        sig = directory.sign("qa1", DEMO["qa1"], "approval", summary.hash, action="batch.release")
        entry = record_signature(rec, sig, batch_id="B-9", reason="batch meets specification")
        assert entry.kind == "signature" and entry.actor == "qa1" and entry.role == "qa"
        assert entry.payload["record_hash"] == summary.hash and entry.payload["meaning"] == "approval"
        text = rec.render_text("B-9")
        assert "SIGNED by QA1 Person (qa1, qa) on " + sig.signed_at_iso in text
        assert "meaning: APPROVAL" in text
        assert rec.verify().ok


# ----------------------------------------------------------------------- CLI
def test_hash_cli_prints_a_verifiable_hash(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct-horse-battery\n"))
    assert auth_cli(["hash", "--stdin", "--iterations", str(FAST)]) == 0
    out = capsys.readouterr().out.strip()
    assert verify_password("correct-horse-battery", out) and "correct-horse" not in out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert auth_cli(["hash", "--stdin"]) == 1


# ----------------------------------------------------------------------- shared, persistent lock-out (issue 12)
def _shared(tmp_path: Path, shipped_data, fast_hashes, clock, source: str) -> UserDirectory:
    from aseptic_cell.auth.lockout import LoginGuard

    path = _test_file(tmp_path, shipped_data, fast_hashes)
    d = UserDirectory.from_file(path, clock)
    d.guard = LoginGuard(tmp_path / "auth.db", d.config.policy, source=source)
    return d


def test_parallel_guesses_cannot_beat_the_lockout_on_any_interface(tmp_path, shipped_data, fast_hashes, clock):
    """16 parallel log-ins (15 wrong, 1 right) on two interfaces sharing the store: no log-in,
    the account locked, at most max_failed_attempts passwords checked (before: the right one
    logged in and cleared the lock)."""
    from concurrent.futures import ThreadPoolExecutor

    hmi = _shared(tmp_path, shipped_data, fast_hashes, clock, "hmi")
    opcua = _shared(tmp_path, shipped_data, fast_hashes, clock, "opcua_server")
    guesses = [f"wrong-guess-{i:02d}" for i in range(15)]
    guesses.insert(7, DEMO["op1"])

    def attempt(i_pw: tuple[int, str]) -> str:
        d = hmi if i_pw[0] % 2 else opcua
        try:
            return d.authenticate("op1", i_pw[1]).id
        except AuthError as exc:
            return exc.reason

    with ThreadPoolExecutor(16) as ex:
        out = list(ex.map(attempt, enumerate(guesses)))
    assert "op1" not in out, out
    assert hmi.is_locked("op1") and opcua.is_locked("op1")
    with pytest.raises(AuthError, match="locked"):
        opcua.authenticate("op1", DEMO["op1"])
    ev = hmi.guard.events_after(0)
    assert sum(e["action"] == "auth.failed" for e in ev) <= 3  # max_failed_attempts passwords checked
    assert any(e["action"] == "auth.lockout" for e in ev)
    assert sum(e["action"] == "auth.refused_locked" for e in ev) >= 12


def test_lockout_survives_a_restart_and_is_recorded(tmp_path, shipped_data, fast_hashes, clock):
    d = _shared(tmp_path, shipped_data, fast_hashes, clock, "hmi")
    for _ in range(3):
        with pytest.raises(AuthError) as info:
            d.authenticate("sup1", "bad-password-1")
        assert info.value.reason == GENERIC_FAILURE
    d.guard.close()
    again = _shared(tmp_path, shipped_data, fast_hashes, clock, "cli")  # a new process, another interface
    with pytest.raises(AuthError, match="locked"):
        again.authenticate("sup1", DEMO["sup1"])
    actions = [(e["action"], e["source"]) for e in again.guard.events_after(0)]
    assert actions.count(("auth.failed", "hmi")) == 3 and ("auth.lockout", "hmi") in actions
    assert ("auth.refused_locked", "cli") in actions
    again.unlock("sup1", by=again.get("qa1"))
    assert again.authenticate("sup1", DEMO["sup1"]).id == "sup1"
    assert ("auth.unlock", "cli") in [(e["action"], e["source"]) for e in again.guard.events_after(0)]
