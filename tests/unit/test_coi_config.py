"""config/coi.yaml: the shipped parameters are valid and used; a broken file is refused with the
field and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from aseptic_cell.coi import CoiConfig, ScanPolicy, load_coi_config
from aseptic_cell.config import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_shipped_coi_config_is_valid_and_drives_the_scan_policy() -> None:
    cfg = load_coi_config(CONFIG)
    assert cfg.coi_two_identifier_check is True and cfg.n_scan_retry == 3
    assert cfg.mismatch_release_signatures == 2
    assert cfg.retention_years() == 30 and cfg.retention_years(["US"]) == 10
    with pytest.raises(KeyError, match="JP"):
        cfg.retention_years(["JP"])
    policy = ScanPolicy.from_config(cfg)
    assert (policy.two_identifiers, policy.n_scan_retry, policy.coi_regex, policy.release_signatures) == (
        True, 3, cfg.isbt_coi_regex, 2)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("isbt_coi_regex", "[A-Z", "not a valid regular expression"),
        ("isbt_coi_regex", ".*", "empty string"),
        ("isbt_coi_regex", "[A-Z|]+", "separator"),
        ("n_scan_retry", -1, "greater than or equal"),
        ("mismatch_release_signatures", 0, "greater than or equal"),
        ("record_retention_years", {"EU": 0}, "at least 1 year"),
        ("record_retention_years", {}, "at least one market"),
        ("record_retention_years", {"europe": 30}, "pattern"),
        ("coi_two_identifer_check", False, "Extra inputs"),
    ],
)
def test_broken_coi_config_is_refused_precisely(tmp_path: Path, key: str, value: object, reason: str) -> None:
    data = yaml.safe_load((CONFIG / "coi.yaml").read_text(encoding="utf-8"))
    data[key] = value
    (tmp_path / "coi.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_coi_config(tmp_path)
    issue = e.value.issues[0]
    assert issue.file == "coi.yaml" and issue.path.startswith(key), str(e.value)
    assert reason in issue.reason, str(e.value)
    assert issue.line is not None


def test_missing_coi_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="coi.yaml.*missing"):
        load_coi_config(tmp_path)


def test_defaults_are_the_documented_ones() -> None:
    cfg = CoiConfig()
    assert cfg.n_scan_retry == 3 and cfg.coi_two_identifier_check and cfg.record_retention_years["EU"] == 30


def test_load_config_validates_coi_yaml_with_the_other_files(tmp_path: Path) -> None:
    from aseptic_cell.config import load_config, schemas

    assert load_config(CONFIG).coi == load_coi_config(CONFIG)
    assert "coi.yaml" in schemas()
    d = tmp_path / "config"
    shutil.copytree(CONFIG, d)
    (d / "coi.yaml").write_text("n_scan_retry: many\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(d)
    assert [(i.file, i.path) for i in e.value.issues] == [("coi.yaml", "n_scan_retry")]
