"""Recipe look-up and validation at batch start (bad input is refused with a precise reason)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ..config import CellConfig
from ..config.recipes import PHASE_TYPES, BatchRecipe


class RecipeError(ValueError):
    """The recipe cannot be run; ``problems`` name each cause."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def recipe_problems(recipe: BatchRecipe, cfg: CellConfig) -> list[str]:
    """Every reference of ``recipe`` that this cell does not have (devices, phase types,
    cycles, programs, ports, RTPs, poses, speed classes)."""
    from ..config.loader import _check_phase  # the loader's own per-phase reference checks

    lay = cfg.layout
    devices = set(lay.device_ids())
    ports = {g.id for g in lay.isolator.glove_ports}
    rtps = {r.id for r in lay.isolator.rtps}
    cycles = {c.id for c in cfg.vhp_cycles.cycles}
    programs = {p.id: p for p in cfg.autoclave_programs.programs}
    poses = set(cfg.arm.poses)
    speed_classes = set(cfg.arm.speed_classes)
    out: list[str] = []
    for up in recipe.procedure.unit_procedures:
        if up.unit not in devices:
            out.append(f"{recipe.id}: unit procedure {up.id}: unknown device {up.unit!r}; known: {sorted(devices)}")
        for op in up.operations:
            for ph in op.phases:
                where = f"{recipe.id}: {up.id}/{op.id}/{ph.id}"
                if ph.type not in PHASE_TYPES:
                    out.append(f"{where}: unknown phase type {ph.type!r}; known: {sorted(PHASE_TYPES)}")
                    continue
                for msg, field in _check_phase(ph.type, ph.params, ports, rtps, cycles, programs, poses,
                                               speed_classes):
                    out.append(f"{where}: params.{field}: {msg}" if field else f"{where}: {msg}")
    return out


def resolve_recipe(recipe_id: str, cfg: CellConfig) -> BatchRecipe:
    """The master recipe ``recipe_id`` of the configuration, or a recipe file path.

    Raises:
        RecipeError: unknown recipe, unreadable/invalid file, or unknown references.
    """
    if not isinstance(recipe_id, str) or not recipe_id.strip():
        raise RecipeError(["recipe_id is empty"])
    recipe: BatchRecipe | None = cfg.recipes.get(recipe_id)
    if recipe is None and recipe_id.endswith((".yaml", ".yml")):
        recipe = load_recipe_file(recipe_id)
    if recipe is None:
        raise RecipeError([f"unknown batch recipe {recipe_id!r}; known: {sorted(cfg.recipes)}"])
    problems = recipe_problems(recipe, cfg)
    if problems:
        raise RecipeError(problems)
    return recipe


def load_recipe_file(path: str | Path) -> BatchRecipe:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError([f"{p}: cannot read recipe: {exc}"]) from None
    try:
        return BatchRecipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError([f"{p}: {'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}"
                           for e in exc.errors()]) from None
