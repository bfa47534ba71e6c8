"""``config/coi.yaml``: the site parameters of chain of identity and custody (all [M]: settings,
never constants; HABITS 11). Validated by ``load_config`` with the other files (``CellConfig.coi``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from ..config.base import Model
from .isbt128 import DEFAULT_COI_REGEX

FILE = "coi.yaml"

Market = Annotated[str, Field(pattern=r"^[A-Z]{2,3}$", description="market code, e.g. EU, US")]


class CoiConfig(Model):
    isbt_coi_regex: str = Field(
        DEFAULT_COI_REGEX,
        description="regex a CoI identifier must fully match; opaque until the licensed ST-028 "
                    "layout is available [ISBT-ST028] [M]",
    )
    coi_two_identifier_check: bool = Field(
        True,
        description="COI-02: the COI looked up from the container id AND the COI printed on the label "
                    "must both be read and agree [M]",
    )
    n_scan_retry: int = Field(3, ge=0, le=10, description="COI-03: re-reads after a failed read, then HOLD [M]")
    din_require_check: bool = Field(
        True, description="a DIN read without a check character (eye-readable or flags 60-96) is refused"
    )
    mismatch_release_signatures: int = Field(
        2, ge=1, le=3, description="COI-30: e-signatures a QA release of a mismatch needs [M]"
    )
    record_retention_years: dict[Market, int] = Field(
        default_factory=lambda: {"EU": 30, "US": 10},
        description="COI-40: custody/tracking record retention per market (regulatory affairs) [M]",
    )
    sec_required: dict[Market, bool] = Field(
        default_factory=lambda: {"EU": False, "US": False},
        description="whether the SEC must be read on receipt, per market [EU-SEC-2015] [M]",
    )

    @field_validator("isbt_coi_regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if rx.fullmatch(""):
            raise ValueError("must not match the empty string")
        if rx.fullmatch("A|B") or rx.fullmatch("A B"):
            raise ValueError("must not match the label field separator '|' or a space")
        return v

    @field_validator("record_retention_years")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        if not v:
            raise ValueError("needs at least one market")
        for market, years in v.items():
            if years < 1:
                raise ValueError(f"{market}: retention must be at least 1 year, got {years}")
        return v

    def retention_years(self, markets: list[str] | None = None) -> int:
        """COI-40: the longest applicable retention (of ``markets``, default all configured).

        Raises:
            KeyError: a market without a configured retention.
        """
        names = list(self.record_retention_years) if markets is None else markets
        missing = [m for m in names if m not in self.record_retention_years]
        if missing:
            raise KeyError(f"no record retention configured for market(s) {', '.join(missing)}")
        return max(self.record_retention_years[m] for m in names)


def load_coi_config(root: str | Path) -> CoiConfig:
    """``root``/coi.yaml validated (``load_config`` also reads it, as ``CellConfig.coi``). No
    defaults are offered for a missing file: the parameters are the site's.

    Raises:
        ConfigError: the file is missing or invalid (file, field, line, reason).
    """
    from ..config.loader import ConfigError, ConfigIssue, parse_yaml_file

    issues: list[ConfigIssue] = []
    parsed = parse_yaml_file(Path(root) / FILE, CoiConfig, FILE, issues)
    if parsed is None:
        raise ConfigError(issues)
    return parsed
