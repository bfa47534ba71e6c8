"""Change control (issue 15 item 7): versions, status, QA approval over the content hash, the
configuration hash and the GMP batch-start verdict; `cellctl config approve/status/diff`."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from aseptic_cell.auth import AuthError, UserDirectory
from aseptic_cell.cli import main as cellctl
from aseptic_cell.config import change_control as cc
from aseptic_cell.config import default_config_dir, load_config
from aseptic_cell.records import BatchRecord, verify_file
from aseptic_cell.supervisor.recipes import load_recipe_file

RECIPE = "CART-TRANSDUCTION"
DWELL = "      dwell_s: 1200.0"


class _Clock:
    def now(self) -> float:
        return time.time()


@pytest.fixture(scope="module")
def shipped():
    return load_config(default_config_dir())


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "config"
    shutil.copytree(default_config_dir(), d, ignore=shutil.ignore_patterns("*.tmp", "__pycache__"))
    return d


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cellctl(list(argv))
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- the shipped configuration
def test_shipped_items_are_approved_and_a_gmp_batch_may_start(shipped):
    states = cc.status(shipped.root)
    kinds = {s.item.kind for s in states}
    assert kinds == set(cc.KINDS)
    controlled = {("recipe", RECIPE), ("vhp_cycle", "VHP-ISO-STD"), ("vhp_cycle", "VHP-ISO-SHORT")} | {
        (s.item.kind, s.item.id) for s in states if s.item.kind in ("autoclave_program", "motion_path")}
    assert [s.reason for s in states if (s.item.kind, s.item.id) in controlled and not s.usable] == []
    v = cc.batch_start_check(shipped, shipped.recipes[RECIPE])
    assert v.ok and v.gmp and v.code == "OK"
    assert v.config_hash == cc.config_hash(shipped.root) and len(v.config_hash) == 64
    used = {(s.item.kind, s.item.id) for s in v.items}
    assert {("recipe", RECIPE), ("vhp_cycle", "VHP-ISO-STD"), ("autoclave_program", "P121-15"),
            ("motion_path", "park__incubator_place")} <= used
    assert ("vhp_cycle", "VHP-ISO-SHORT") not in used  # not named by the recipe
    payload = v.to_payload()
    assert payload["config_hash"] == v.config_hash and payload["gmp"] is True
    assert {"kind": "recipe", "id": RECIPE, "version": 1, "content_hash": cc.load_items(shipped.root)[
        ("recipe", RECIPE)].content_hash, "state": "APPROVED"} in payload["items"]


def test_whole_configuration_hash_sees_every_rewrite_despite_its_digest_cache(tmp_path):
    """config_hash reuses a file's digest while its stat signature is unchanged (it runs at every
    batch start); a same-size rewrite dated back to the old mtime must still change the hash: its
    ctime moves (a user cannot set it), and a recent change is read again anyway (racy window)."""
    d = _copy(tmp_path)
    f = d / "vhp_cycles.yaml"
    old = time.time() - 3600
    os.utime(f, (old, old))
    time.sleep(0.01)
    whole = cc.config_hash(d)
    assert cc.config_hash(d) == whole  # unchanged: the cached digests give the same hash
    text = f.read_text()
    i = text.index(DWELL)
    f.write_text(text[:i] + DWELL.replace("1", "2", 1) + text[i + len(DWELL):])  # same size, another byte
    os.utime(f, (old, old))  # mtime set back to the cached signature's
    assert f.stat().st_size == len(text.encode()) and f.stat().st_mtime == old
    assert cc.config_hash(d) != whole
    # outside the racy window too: the ctime (not settable) differs from the cached signature
    cc._DIGESTS[str(f.absolute())] = (cc._DIGESTS[str(f.absolute())][0][:4] + (0,), "stale")
    assert cc.config_hash(d) != whole


def test_content_hash_ignores_comments_and_status_but_not_a_parameter(tmp_path):
    d = _copy(tmp_path)
    before = cc.load_items(d)[("vhp_cycle", "VHP-ISO-STD")].content_hash
    whole = cc.config_hash(d)
    _edit(d / "vhp_cycles.yaml", DWELL, DWELL + "   # a new comment")
    assert cc.load_items(d)[("vhp_cycle", "VHP-ISO-STD")].content_hash == before
    assert cc.config_hash(d) != whole  # the whole-configuration hash covers every byte
    _edit(d / "vhp_cycles.yaml", DWELL, "      dwell_s: 1100.0")
    assert cc.load_items(d)[("vhp_cycle", "VHP-ISO-STD")].content_hash != before


# ----------------------------------------------------------------------------- GMP refusals
@pytest.mark.parametrize("case", ["changed", "draft", "obsolete", "not_approved", "bad_signature", "motion_draft"])
def test_gmp_batch_refused_for_a_draft_obsolete_or_changed_item(tmp_path, case):
    d = _copy(tmp_path)
    expect_id = {"changed": "VHP-ISO-STD", "draft": RECIPE, "obsolete": "P121-15", "not_approved": RECIPE,
                 "bad_signature": "P121-15", "motion_draft": "park__incubator_place"}[case]
    if case == "changed":
        _edit(d / "vhp_cycles.yaml", DWELL, "      dwell_s: 1100.0")
    elif case == "draft":
        _edit(d / "recipes" / "cart_transduction.yaml", "status: approved", "status: draft")
    elif case == "obsolete":
        _edit(d / "autoclave_programs.yaml",
              "  - id: P121-15\n    kind: sterilise\n    version: 1\n    status: approved",
              "  - id: P121-15\n    kind: sterilise\n    version: 1\n    status: obsolete")
    elif case == "not_approved":
        doc = yaml.safe_load((d / "approvals.yaml").read_text())
        doc["approvals"] = [a for a in doc["approvals"] if a["id"] != RECIPE]
        (d / "approvals.yaml").write_text(yaml.safe_dump(doc))
    elif case == "bad_signature":  # an engineer's signature pasted over a QA approval
        doc = yaml.safe_load((d / "approvals.yaml").read_text())
        for a in doc["approvals"]:
            if a["id"] == "P121-15":
                a["approval"]["role"] = "engineer"
        (d / "approvals.yaml").write_text(yaml.safe_dump(doc))
    elif case == "motion_draft":
        from aseptic_cell.motion.library import MotionLibrary

        lib = MotionLibrary.load(d / "motion_library.yaml")
        lib.revoke("park__incubator_place")
        lib.save()
    cfg = load_config(d)
    v = cc.batch_start_check(cfg, cfg.recipes[RECIPE])
    code = {"changed": "CONFIG_CHANGED", "draft": "CONFIG_DRAFT", "obsolete": "CONFIG_OBSOLETE",
            "not_approved": "CONFIG_NOT_APPROVED", "bad_signature": "CONFIG_BAD_SIGNATURE",
            "motion_draft": "CONFIG_DRAFT"}[case]
    assert not v.ok and v.gmp and v.code == code, v.reason
    assert expect_id in v.reason and v.reason.startswith("GMP batch refused by change control")
    assert [s.item.id for s in v.problems] == [expect_id]
    assert v.config_hash == cc.config_hash(d)  # the hash is still given (recorded with the refusal)
    if case == "changed":
        assert "changed since its approval by qa1" in v.reason


def test_loaded_configuration_that_differs_from_the_file_is_refused(shipped):
    cycles = shipped.vhp_cycles.model_copy(deep=True)
    cycles.cycles[0].decontaminate.dwell_s = 60.0  # changed in memory, file and approval untouched
    cfg = dataclasses.replace(shipped, vhp_cycles=cycles)
    v = cc.batch_start_check(cfg, cfg.recipes[RECIPE])
    assert not v.ok and v.code == "CONFIG_CHANGED"
    assert "VHP-ISO-STD" in v.reason and "differs from vhp_cycles.yaml on disk" in v.reason


def test_recipe_file_outside_the_configuration_is_an_engineering_run_or_refused_as_gmp(shipped, tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text((shipped.root / "recipes" / "cart_transduction.yaml").read_text().replace(
        "id: CART-TRANSDUCTION", "id: CART-TRIAL"))
    recipe = load_recipe_file(f)
    v = cc.batch_start_check(shipped, recipe)
    assert v.ok and not v.gmp and "engineering run" in v.reason and "not releasable" in v.reason
    assert "CART-TRIAL" in v.reason  # reported although not enforced
    g = cc.batch_start_check(shipped, recipe, gmp=True)
    assert not g.ok and g.code == "CONFIG_DRAFT" and "not an item of the configuration" in g.reason


def test_unreadable_approvals_store_refuses_a_gmp_batch(tmp_path):
    d = _copy(tmp_path)
    (d / "approvals.yaml").write_text("version: 1\napprovals: [{kind: recipe}]\n")
    cfg = load_config(d)
    v = cc.batch_start_check(cfg, cfg.recipes[RECIPE])
    assert not v.ok and v.code == "CONFIG_UNREADABLE" and "approvals[0]" in v.reason


# ----------------------------------------------------------------------------- approving
def test_approve_signs_the_changed_item_keeps_comments_and_refuses_a_non_qa_signer(tmp_path):
    d = _copy(tmp_path)
    text = (d / "vhp_cycles.yaml").read_text().replace(DWELL, "      dwell_s: 1100.0", 1).replace(
        "    version: 3\n    status: approved", "    version: 4\n    status: draft", 1)
    (d / "vhp_cycles.yaml").write_text(text)
    cfg = load_config(d)
    assert cc.batch_start_check(cfg, cfg.recipes[RECIPE]).code == "CONFIG_DRAFT"
    users = UserDirectory.from_file(d / "users.yaml", _Clock())
    with pytest.raises(AuthError):  # an engineer may not approve (role check of recipe.approve)
        cc.approve(d, "vhp_cycle", "VHP-ISO-STD", users, "eng1", "eng1-demo-2026")
    with pytest.raises(AuthError):
        cc.approve(d, "vhp_cycle", "VHP-ISO-STD", users, "qa1", "wrong-password")
    with pytest.raises(cc.ChangeControlError, match="cellctl motion approve"):
        cc.approve(d, "motion_path", "park__incubator_place", users, "qa1", "qa1-demo-2026")
    assert cc.load_items(d)[("vhp_cycle", "VHP-ISO-STD")].status == "draft"  # nothing written by refusals
    rec = BatchRecord(tmp_path / "cell.db", _Clock())
    sig = cc.approve(d, "vhp_cycle", "VHP-ISO-STD", users, "qa1", "qa1-demo-2026", record=rec)
    entry = rec.entries()[-1]  # the approval is also in the hash-chained record, with its signed content
    assert entry.kind == "signature" and entry.payload["item_id"] == "VHP-ISO-STD"
    assert entry.payload["record_hash"] == sig.record_hash and entry.payload["item_version"] == 4
    report = verify_file(tmp_path / "cell.db")
    assert report.ok and report.signatures_checked == 1  # signed content re-hashes to the signed hash
    rec.close()
    after = (d / "vhp_cycles.yaml").read_text()
    assert after == text.replace("    version: 4\n    status: draft", "    version: 4\n    status: approved", 1)
    item = cc.load_items(d)[("vhp_cycle", "VHP-ISO-STD")]
    assert sig.record_hash == item.content_hash and item.approval == sig.to_payload()
    assert cc.item_state(item).usable
    cfg = load_config(d)
    v = cc.batch_start_check(cfg, cfg.recipes[RECIPE])
    assert v.ok, v.reason
    history = yaml.safe_load((d / "approvals.yaml").read_text())["approvals"]
    assert [a["version"] for a in history if a["id"] == "VHP-ISO-STD"] == [3, 4]  # history kept


def test_obsolete_item_cannot_be_approved_again(tmp_path):
    d = _copy(tmp_path)
    _edit(d / "recipes" / "cart_transduction.yaml", "status: approved", "status: obsolete")
    users = UserDirectory.from_file(d / "users.yaml", _Clock())
    with pytest.raises(cc.ChangeControlError, match="obsolete"):
        cc.approve(d, "recipe", RECIPE, users, "qa1", "qa1-demo-2026")


def test_status_text_edit_inserts_a_missing_status_line():
    text = "cycles:\n  - id: A\n    version: 2\n    x: 1  # c\n  - id: B\n    version: 1\n    status: draft\n"
    out = cc._set_status_text(text, "vhp_cycle", "A", "approved")
    assert out == "cycles:\n  - id: A\n    version: 2\n    status: approved\n    x: 1  # c\n  - id: B\n" \
                  "    version: 1\n    status: draft\n"
    assert cc._set_status_text(out, "vhp_cycle", "B", "approved").endswith("    status: approved\n")
    with pytest.raises(cc.ChangeControlError, match="'- id:' line"):
        cc._set_status_text(text, "vhp_cycle", "C", "approved")


# ----------------------------------------------------------------------------- CLI
def test_cli_status_approve_and_diff_of_two_directories(tmp_path):
    d = _copy(tmp_path)
    code, out, _ = _run("config", "status", "--config", str(d))
    assert code == 0 and "items approved and unchanged" in out
    assert "VHP-ISO-STD" in out and "APPROVED" in out and cc.config_hash(d) in out
    e = tmp_path / "edited"
    shutil.copytree(d, e)
    _edit(e / "vhp_cycles.yaml", DWELL, "      dwell_s: 1100.0")
    new_recipe = (e / "recipes" / "trial.yaml")
    new_recipe.write_text((e / "recipes" / "cart_transduction.yaml").read_text().replace(
        "id: CART-TRANSDUCTION", "id: CART-TRIAL").replace("status: approved", "status: draft"))
    code, out, _ = _run("config", "diff", str(d), str(e), "--config", str(d))
    assert code == 0, out
    old_h = cc.load_items(d)[("vhp_cycle", "VHP-ISO-STD")].content_hash
    new_h = cc.load_items(e)[("vhp_cycle", "VHP-ISO-STD")].content_hash
    assert f"CHANGED  vhp_cycle VHP-ISO-STD v3 [approved] hash {old_h[:12]} -> {new_h[:12]}" in out
    assert "decontaminate.dwell_s: 1200.0 -> 1100.0" in out
    assert "ADDED    recipe CART-TRIAL v1 [draft]" in out
    assert "recipes/trial.yaml: (absent) ->" in out and "vhp_cycles.yaml:" in out
    code, out, err = _run("config", "status", "--config", str(e))
    assert "CHANGED: vhp_cycle 'VHP-ISO-STD' v3 (vhp_cycles.yaml) changed since its approval" in out
    code, out, err = _run("config", "approve", "recipe", "CART-TRIAL", "--user", "op1", "--password-stdin",
                          "--config", str(e), stdin="op1-demo-2026\n")
    assert code == 1 and "REFUSED" in err
    code, out, err = _run("config", "approve", "recipe", "CART-TRIAL", "--user", "qa1", "--password-stdin",
                          "--config", str(e), stdin="qa1-demo-2026\n")
    assert code == 0 and out.startswith("APPROVED recipe CART-TRIAL: Signed by Quinn Quality")
    assert cc.item_state(cc.load_items(e)[("recipe", "CART-TRIAL")]).usable


def test_cli_diff_of_two_git_revisions(tmp_path):
    repo = tmp_path / "repo"
    d = repo / "config"
    d.mkdir(parents=True)
    for name in ("vhp_cycles.yaml", "autoclave_programs.yaml", "approvals.yaml"):
        shutil.copy(default_config_dir() / name, d / name)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}

    def git(*a: str) -> None:
        subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, env=env)

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "one")
    _edit(d / "autoclave_programs.yaml", "    plateau: {setpoint_c: 121.0, band_c: 3.0, hold_s: 900.0}",
          "    plateau: {setpoint_c: 121.0, band_c: 3.0, hold_s: 1200.0}")
    git("commit", "-q", "-am", "two")
    code, out, err = _run("config", "diff", "HEAD~1", "HEAD", "--config", str(d))
    assert code == 0, err
    assert "CHANGED  autoclave_program P121-15 v1 [approved]" in out
    assert "plateau.hold_s: 900.0 -> 1200.0" in out
    assert "1 item(s) changed" in out
    code, out, err = _run("config", "diff", "no-such-rev", "HEAD", "--config", str(d))
    assert code == 2 and "neither a configuration directory nor a git revision" in err
