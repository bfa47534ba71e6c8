"""Load and validate the whole configuration directory.

``load_config(dir)`` reads every file, validates it with its pydantic model, then checks the
references between files (recipes → devices, cycles, programs, ports, poses; geometry →
glove ports and doors; the interlock catalogue → the required rows IL-01..IL-12). All
problems are collected and raised together as a :class:`ConfigError`, each naming the file,
the field path (and YAML line where known) and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .devices import AutoclavePrograms, CellLayout, VHPCycles
from .interlocks import InterlockCatalogue
from .recipes import BatchRecipe
from .robot import ArmConfig, GeometryConfig


def config_files() -> dict[str, type[BaseModel]]:
    """File name → model. (Alarm and user models are imported here: they build on config.base.)"""
    from ..alarms.models import AlarmsFile
    from ..auth.models import UsersFile
    from ..coi.config import CoiConfig

    return {
        "cell.yaml": CellLayout,
        "arm.yaml": ArmConfig,
        "geometry.yaml": GeometryConfig,
        "vhp_cycles.yaml": VHPCycles,
        "autoclave_programs.yaml": AutoclavePrograms,
        "interlocks.yaml": InterlockCatalogue,
        "alarms.yaml": AlarmsFile,
        "users.yaml": UsersFile,
        "coi.yaml": CoiConfig,
    }
RECIPE_DIR = "recipes"
REQUIRED_INTERLOCKS = tuple(f"IL-{i:02d}" for i in range(1, 13))
"""IL-13 (role + e-signature) is enforced by the auth layer and supervisor/signing.py, not a catalogue row."""


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<root>'}: {self.reason}"


class ConfigError(Exception):
    """One or more configuration problems; ``issues`` lists them all."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True)
class CellConfig:
    """The validated configuration of one cell."""

    root: Path
    layout: CellLayout
    arm: ArmConfig
    geometry: GeometryConfig
    vhp_cycles: VHPCycles
    autoclave_programs: AutoclavePrograms
    interlocks: InterlockCatalogue
    alarms: Any  # aseptic_cell.alarms.models.AlarmsFile
    users: Any  # aseptic_cell.auth.models.UsersFile
    recipes: dict[str, BatchRecipe] = field(default_factory=dict)
    recipe_files: dict[str, str] = field(default_factory=dict)
    coi: Any = None  # aseptic_cell.coi.config.CoiConfig (chain of identity and custody)
    scheduling: Any = None  # aseptic_cell.scheduling.resources.SchedulingConfig (scheduling.yaml)
    processes: dict[str, Any] = field(default_factory=dict)  # processes/*.yaml by id (ProcessDefinition)

    def recipe(self, recipe_id: str) -> BatchRecipe:
        try:
            return self.recipes[recipe_id]
        except KeyError:
            raise KeyError(
                f"unknown batch recipe {recipe_id!r}; known: {sorted(self.recipes)}"
            ) from None


# ----------------------------------------------------------------------------- YAML
class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (deepest node found along the path)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _format_loc(loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """Turn a pydantic error location into 'a.b[2].c', dropping union-branch tags."""
    parts: list[str] = []
    clean: list[Any] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
            clean.append(p)
        elif isinstance(p, str) and (p[:1].isupper() or p.startswith("function-") or "[" in p):
            continue  # union member tag such as 'Comparison' or 'AllOf'
        else:
            name = "not" if p == "not_" else p
            parts.append(("." if parts else "") + name)
            clean.append(name)
    return "".join(parts), tuple(clean)


M = TypeVar("M", bound=BaseModel)


def _parse(path: Path, model: type[M], rel: str, issues: list[ConfigIssue],
           context: Mapping[str, Any] | None = None) -> M | None:
    if not path.is_file():
        issues.append(ConfigIssue(rel, "", "file is missing"))
        return None
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - strict SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        issues.append(ConfigIssue(rel, "", f"malformed YAML: {problem}", line))
        return None
    if not isinstance(data, dict):
        issues.append(ConfigIssue(rel, "", f"expected a mapping at the top level, got {type(data).__name__}"))
        return None
    try:
        return model.model_validate(data, context=dict(context) if context is not None else None)
    except ValidationError as exc:
        seen = set()
        for err in exc.errors():
            # Unions report one error per branch; keep the most specific ones only.
            path_s, clean = _format_loc(tuple(err["loc"]))
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            key = (path_s, msg)
            if key in seen:
                continue
            seen.add(key)
            issues.append(ConfigIssue(rel, path_s, msg, _line_of(node, clean)))
        return None


def parse_yaml_file(path: Path, model: type[M], rel: str, issues: list[ConfigIssue],
                    context: Mapping[str, Any] | None = None) -> M | None:
    """Read one YAML file (duplicate keys rejected) and validate it with ``model`` (pydantic
    validation ``context`` optional); each problem is appended to ``issues`` with its field path
    and line, and ``None`` is returned. For configuration files outside :func:`config_files`
    (``scheduling.yaml``, ``processes/*.yaml``)."""
    return _parse(path, model, rel, issues, context)


# ----------------------------------------------------------------------------- cross-file checks
def cross_check(cfg: CellConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    layout = cfg.layout
    iso = layout.isolator
    ports = {g.id for g in iso.glove_ports}
    rtps = {r.id for r in iso.rtps}
    devices = set(layout.device_ids())
    cycles = {c.id for c in cfg.vhp_cycles.cycles}
    programs = {p.id: p for p in cfg.autoclave_programs.programs}
    poses = set(cfg.arm.poses)
    speed_classes = set(cfg.arm.speed_classes)

    # geometry -> layout
    box_names = {b.name for b in cfg.geometry.boxes}
    equipment = {b.name for b in cfg.geometry.boxes if b.kind == "equipment"}
    doors = {"hatch_a", "hatch_b", "autoclave_load", "autoclave_unload"} | {
        f"{r.lower()}_alpha" for r in rtps
    } | equipment
    for i, box in enumerate(cfg.geometry.boxes):
        if box.active == "always":
            continue
        kind, _, ref = box.active.partition(":")
        ok = (
            (kind == "glove_in_use" and ref in ports)
            or (kind == "door_closed" and ref in doors)
            or (kind == "container_open" and ref in box_names)
        )
        if not ok:
            issues.append(ConfigIssue("geometry.yaml", f"boxes[{i}].active",
                                      f"{box.active!r} refers to an unknown {kind.replace('_', ' ')} target {ref!r}"))
    link_names = {link.name for link in cfg.arm.links}
    for i, (_link, obstacle) in enumerate(cfg.arm.allowed_contacts):
        if obstacle not in box_names and obstacle not in link_names:
            issues.append(ConfigIssue("arm.yaml", f"allowed_contacts[{i}]",
                                      f"{obstacle!r} is neither a geometry box nor a link"))

    # interlock catalogue completeness
    rule_ids = {r.id for r in cfg.interlocks.rules}
    for rid in REQUIRED_INTERLOCKS:
        if rid not in rule_ids:
            issues.append(ConfigIssue("interlocks.yaml", "rules",
                                      f"required interlock {rid} (interlock catalogue) is missing"))

    # alarms -> layout
    from ..alarms.models import cross_check as alarms_cross_check

    for problem in alarms_cross_check(cfg.alarms, layout.device_ids()):
        issues.append(ConfigIssue("alarms.yaml", "alarms", problem))

    # interlock parameters duplicated from cell.yaml must agree
    params = cfg.interlocks.parameters
    for pname, value, source in (
        ("hatch_dwell_s", iso.hatch.dwell_s, "cell.yaml isolator.hatch.dwell_s"),
        ("glove_campaign_window_h", iso.glove_test.campaign_window_h,
         "cell.yaml isolator.glove_test.campaign_window_h"),
        ("autoclave_door_max_temp_c", layout.autoclave.door_open_max_temp_c,
         "cell.yaml autoclave.door_open_max_temp_c"),
        ("autoclave_door_max_gauge_kpa", layout.autoclave.door_open_max_gauge_kpa,
         "cell.yaml autoclave.door_open_max_gauge_kpa"),
    ):
        if pname in params and params[pname] != value:
            issues.append(ConfigIssue("interlocks.yaml", f"parameters.{pname}",
                                      f"{params[pname]} disagrees with {source} = {value}"))

    # recipes -> everything else
    for rid, recipe in cfg.recipes.items():
        rel = cfg.recipe_files.get(rid, f"{RECIPE_DIR}/?")
        for u, up in enumerate(recipe.procedure.unit_procedures):
            base = f"procedure.unit_procedures[{u}]"
            if up.unit not in devices:
                issues.append(ConfigIssue(rel, f"{base}.unit",
                                          f"unknown device {up.unit!r}; known: {sorted(devices)}"))
            for o, op in enumerate(up.operations):
                for p, ph in enumerate(op.phases):
                    ppath = f"{base}.operations[{o}].phases[{p}].params"
                    for msg, field_name in _check_phase(ph.type, ph.params, ports, rtps, cycles,
                                                        programs, poses, speed_classes):
                        issues.append(ConfigIssue(rel, f"{ppath}.{field_name}" if field_name else ppath, msg))
    return issues


def _check_phase(ptype: str, params: Mapping[str, Any], ports: Collection[str], rtps: Collection[str],
                 cycles: Collection[str], programs: Mapping[str, Any], poses: Collection[str],
                 speed_classes: Collection[str]) -> Iterator[tuple[str, str]]:
    """(message, parameter) for each problem of one phase's parameters."""

    def finite_pos(name: str) -> Iterator[tuple[str, str]]:
        v = params.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            yield f"must be a finite number > 0, got {v!r}", name

    if ptype == "glove_test":
        sel = params.get("ports", "all")
        if sel != "all":
            if not isinstance(sel, list) or not sel:
                yield "must be 'all' or a non-empty list of glove port ids", "ports"
            else:
                for p in sel:
                    if p not in ports:
                        yield f"unknown glove port {p!r}; known: {sorted(ports)}", "ports"
    elif ptype == "vhp_decontaminate":
        if params["cycle"] not in cycles:
            yield f"unknown VHP cycle recipe {params['cycle']!r}; known: {sorted(cycles)}", "cycle"
    elif ptype in ("autoclave_transfer_in", "autoclave_test"):
        prog = programs.get(params["program"])
        if prog is None:
            yield f"unknown autoclave program {params['program']!r}; known: {sorted(programs)}", "program"
        elif ptype == "autoclave_transfer_in" and prog.kind != "sterilise":
            yield f"program {prog.id!r} is a {prog.kind} program; a transfer needs a sterilise program", "program"
        elif ptype == "autoclave_test" and prog.kind == "sterilise":
            yield f"program {prog.id!r} is not a test program (bowie_dick or leak_test)", "program"
    elif ptype == "rtp_transfer_in":
        if params["rtp"] not in rtps:
            yield f"unknown RTP {params['rtp']!r}; known: {sorted(rtps)}", "rtp"
    elif ptype == "robot_task":
        wps = params["waypoints"]
        if not isinstance(wps, list) or len(wps) < 2:
            yield "needs a list of at least two named poses", "waypoints"
        else:
            for w in wps:
                if w not in poses:
                    yield f"unknown pose {w!r}; known: {sorted(poses)}", "waypoints"
        sc = params.get("speed_class", "transit")
        if sc not in speed_classes:
            yield f"unknown speed class {sc!r}; known: {sorted(speed_classes)}", "speed_class"
        if "duration_s" in params:
            yield from finite_pos("duration_s")
    elif ptype == "process_hold":
        yield from finite_pos("duration_s")


def _load_scheduling(root: Path, issues: list[ConfigIssue]) -> tuple[Any, dict[str, Any]]:
    """``scheduling.yaml`` and ``processes/*.yaml`` (multi-patient batches), when present."""
    from ..scheduling.process import load_processes
    from ..scheduling.resources import ResourceSet, SchedulingConfig

    if not (root / "scheduling.yaml").is_file():
        return None, {}
    sched = _parse(root / "scheduling.yaml", SchedulingConfig, "scheduling.yaml", issues)
    if sched is None:
        return None, {}
    try:
        return sched, load_processes(root, ResourceSet(sched.resources))
    except ConfigError as exc:
        issues.extend(exc.issues)
        return sched, {}


# ----------------------------------------------------------------------------- entry point
def load_config(directory: str | Path) -> CellConfig:
    """Load, validate and cross-check the configuration in ``directory``.

    Raises:
        ConfigError: listing every problem found (file, field path, line, reason).
    """
    root = Path(directory)
    issues: list[ConfigIssue] = []
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(root), "", "configuration directory does not exist")])
    parsed: dict[str, Any] = {}
    for name, model in config_files().items():
        parsed[name] = _parse(root / name, model, name, issues)
    recipes: dict[str, BatchRecipe] = {}
    recipe_files: dict[str, str] = {}
    recipe_dir = root / RECIPE_DIR
    if recipe_dir.is_dir():
        for f in sorted(recipe_dir.glob("*.yaml")):
            rel = f"{RECIPE_DIR}/{f.name}"
            r = _parse(f, BatchRecipe, rel, issues)
            if r is None:
                continue
            if r.id in recipes:
                issues.append(ConfigIssue(rel, "id", f"recipe id {r.id!r} is also defined in another file"))
                continue
            recipes[r.id] = r
            recipe_files[r.id] = rel
    scheduling, processes = _load_scheduling(root, issues)
    if issues:
        raise ConfigError(issues)
    cfg = CellConfig(
        root=root,
        layout=parsed["cell.yaml"],
        arm=parsed["arm.yaml"],
        geometry=parsed["geometry.yaml"],
        vhp_cycles=parsed["vhp_cycles.yaml"],
        autoclave_programs=parsed["autoclave_programs.yaml"],
        interlocks=parsed["interlocks.yaml"],
        alarms=parsed["alarms.yaml"],
        users=parsed["users.yaml"],
        coi=parsed["coi.yaml"],
        recipes=recipes,
        recipe_files=recipe_files,
        scheduling=scheduling,
        processes=processes,
    )
    issues = cross_check(cfg)
    for rid, recipe in recipes.items():  # a patient recipe names a process of processes/*.yaml
        for up, op, ph in recipe.phases():
            if ph.type == "process" and ph.params.get("process") not in processes:
                issues.append(ConfigIssue(recipe_files[rid], f"{up.id}/{op.id}/{ph.id}.params.process",
                                          f"unknown process {ph.params.get('process')!r}; known: {sorted(processes)}"))
    if issues:
        raise ConfigError(issues)
    return cfg


def schemas() -> dict[str, dict[str, Any]]:
    """JSON schema of every configuration file (``recipes/*.yaml`` share one)."""
    out = {name: model.model_json_schema() for name, model in config_files().items()}
    out["recipes/*.yaml"] = BatchRecipe.model_json_schema()
    return out


def default_config_dir() -> Path:
    """The repository's config/ (editable install) or the installed share/aseptic_cell/config."""
    here = Path(__file__).resolve().parents[2] / "config"
    if (here / "cell.yaml").is_file():
        return here
    import sys

    share = Path(sys.prefix) / "share" / "aseptic_cell" / "config"
    return share

