"""Identity of the material in the cell: COI → batch → container (→ sample), the container
genealogy and the storage positions registered to one COI at a time.

* ``COI_ID`` (the ISBT 128 CoI identifier or a sponsor's, opaque, non-PHI [CFR1271 §1271.290(c)])
  → ``BATCH_ID`` (one per COI per manufacturing run) → ``CONTAINER_ID`` (one per physical
  container) → ``SAMPLE_ID`` (a sample tube's test id). Engineering design after [ISBT-ST028].
* Every container but the starting material names its parent container(s); every container
  traces to the apheresis DIN(s) it came from — tracking both ways [CFR1271 §1271.290(b)].
  Containers of different COIs are never parents of one container (no pooling
  [EU-ATMP-2017] [M]; SEG-03).
* A storage or park position (incubator slot, rack position, RTP beta) is registered to one COI
  at a time; placing a container of another COI there is refused (COI-20, engineering).

Nothing here writes the batch record; :mod:`.custody` records the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum


class ContainerKind(StrEnum):
    APHERESIS_BAG = "apheresis_bag"  # starting material; carries its DIN
    BETA = "beta"  # an RTP beta container holding other containers
    CULTURE_BAG = "culture_bag"
    TRANSFER_BAG = "transfer_bag"
    SAMPLE_TUBE = "sample_tube"
    FINAL_BAG = "final_bag"
    UNREGISTERED = "unregistered"  # found where a step expected another container, never registered (COI-30)


class ContainerStatus(StrEnum):
    ACTIVE = "ACTIVE"  # closed, usable
    OPEN = "OPEN"  # open or connected in grade A
    QUARANTINE = "QUARANTINE"  # COI-30: blocked until a QA decision
    CONSUMED = "CONSUMED"  # emptied into its children (end state)
    DISPOSED = "DISPOSED"  # in the waste port (end state)
    SHIPPED = "SHIPPED"  # left the cell (end state)


END_STATES = frozenset({ContainerStatus.CONSUMED, ContainerStatus.DISPOSED, ContainerStatus.SHIPPED})


class LocationKind(StrEnum):
    INCUBATOR_SLOT = "incubator_slot"
    RACK = "rack"
    RTP_BETA = "rtp_beta"
    WORK_POSITION = "work_position"  # a station (welder, sealer, counter, work surface): not registered to a COI
    QUARANTINE = "quarantine"
    WASTE = "waste"
    OUTSIDE = "outside"  # outside the cell (receipt, shipping)


STORAGE_KINDS = frozenset({LocationKind.INCUBATOR_SLOT, LocationKind.RACK, LocationKind.RTP_BETA})
"""Positions registered to one COI at a time (COI-20)."""


class GenealogyError(ValueError):
    """A registration or change that would break the genealogy (names the container and why)."""


@dataclass(frozen=True)
class Batch:
    id: str
    coi: str
    dins: tuple[str, ...] = ()


@dataclass(frozen=True)
class Container:
    id: str
    coi: str
    batch: str
    kind: ContainerKind
    parents: tuple[str, ...] = ()
    location: str | None = None
    status: ContainerStatus = ContainerStatus.ACTIVE
    din: str | None = None  # the apheresis bag's DIN body
    sample_id: str | None = None  # a sample tube's test id

    @property
    def ended(self) -> bool:
        return self.status in END_STATES


class Genealogy:
    """Batches and containers of the cell; every container traces to its apheresis DIN."""

    def __init__(self) -> None:
        self._batches: dict[str, Batch] = {}
        self._containers: dict[str, Container] = {}
        self._children: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ batches
    def register_batch(self, batch_id: str, coi: str, dins: Iterable[str] = ()) -> Batch:
        if not batch_id or not coi:
            raise GenealogyError("a batch needs a batch id and a COI")
        if batch_id in self._batches:
            raise GenealogyError(f"batch {batch_id} is already registered")
        b = Batch(batch_id, coi, tuple(dins))
        self._batches[batch_id] = b
        return b

    def batch(self, batch_id: str) -> Batch:
        try:
            return self._batches[batch_id]
        except KeyError:
            raise GenealogyError(f"unknown batch {batch_id}") from None

    def get_batch(self, batch_id: str) -> Batch | None:
        return self._batches.get(batch_id)

    def batches_of_coi(self, coi: str) -> tuple[str, ...]:
        return tuple(b.id for b in self._batches.values() if b.coi == coi)

    # ------------------------------------------------------------------ containers
    def register_container(
        self,
        container_id: str,
        *,
        batch: str,
        kind: ContainerKind,
        parents: Iterable[str] = (),
        location: str | None = None,
        din: str | None = None,
        sample_id: str | None = None,
    ) -> Container:
        """Register a new container of ``batch`` (its COI is the batch's).

        Raises:
            GenealogyError: see :meth:`new_container`.
        """
        c = self.new_container(container_id, batch=batch, kind=kind, parents=parents, location=location, din=din,
                               sample_id=sample_id)
        self._containers[container_id] = c
        for p in c.parents:
            self._children.setdefault(p, []).append(container_id)
        return c

    def new_container(
        self,
        container_id: str,
        *,
        batch: str,
        kind: ContainerKind,
        parents: Iterable[str] = (),
        location: str | None = None,
        din: str | None = None,
        sample_id: str | None = None,
    ) -> Container:
        """The container :meth:`register_container` would register, checked but not registered.

        Raises:
            GenealogyError: duplicate id; unknown batch; an apheresis bag without a DIN of its batch
                or with parents; another container without a parent; an unknown parent, a parent
                of another COI (no pooling) or a parent in quarantine or an end state.
        """
        if not container_id:
            raise GenealogyError("a container needs an id")
        if container_id in self._containers:
            raise GenealogyError(f"container {container_id} is already registered")
        b = self.batch(batch)
        parent_ids = tuple(parents)
        if kind is ContainerKind.APHERESIS_BAG:
            if parent_ids:
                raise GenealogyError(f"{container_id}: an apheresis bag is starting material and has no parent")
            if not din:
                raise GenealogyError(f"{container_id}: an apheresis bag must carry its DIN")
            if b.dins and din not in b.dins:
                raise GenealogyError(f"{container_id}: DIN {din} is not a DIN of batch {batch} ({', '.join(b.dins)})")
        elif kind is not ContainerKind.BETA and not parent_ids:
            raise GenealogyError(f"{container_id}: a {kind.value} must name its parent container(s)")
        if din and kind is not ContainerKind.APHERESIS_BAG:
            raise GenealogyError(f"{container_id}: only the apheresis bag carries a DIN")
        for p in parent_ids:
            parent = self._containers.get(p)
            if parent is None:
                raise GenealogyError(f"{container_id}: parent {p} is not registered")
            if parent.coi != b.coi:
                raise GenealogyError(f"{container_id}: parent {p} belongs to another COI ({parent.coi} != {b.coi}): "
                                     "containers of two COIs are never combined")
            if parent.status is ContainerStatus.QUARANTINE or parent.ended:
                raise GenealogyError(f"{container_id}: parent {p} is {parent.status.value}")
        return Container(container_id, b.coi, batch, kind, parent_ids, location, ContainerStatus.ACTIVE, din, sample_id)

    def quarantine_found(self, container_id: str, *, batch: str, location: str | None,
                         coi: str | None = None) -> Container:
        """A container a step found where it expected another and that no batch registered (a bag at the
        RTP no batch is receiving, or one whose label names another COI): it enters the genealogy only
        in QUARANTINE (COI-30), attributed to ``batch``, the batch whose step found it (its record holds
        the custody event). ``coi``: the COI its label carries, if any (else the finding batch's). It is
        never a parent and never released to ACTIVE (:meth:`set_status`): only disposed.

        Raises:
            GenealogyError: no id, the id is registered, or the batch is unknown.
        """
        if not container_id:
            raise GenealogyError("a found container needs an id")
        if container_id in self._containers:
            raise GenealogyError(f"container {container_id} is already registered")
        b = self.batch(batch)
        c = Container(container_id, coi or b.coi, batch, ContainerKind.UNREGISTERED, (), location,
                      ContainerStatus.QUARANTINE)
        self._containers[container_id] = c
        return c

    def get(self, container_id: str) -> Container | None:
        return self._containers.get(container_id)

    def container(self, container_id: str) -> Container:
        c = self._containers.get(container_id)
        if c is None:
            raise GenealogyError(f"unknown container {container_id}")
        return c

    def containers(self, batch: str | None = None) -> list[Container]:
        return [c for c in self._containers.values() if batch is None or c.batch == batch]

    def children(self, container_id: str) -> tuple[str, ...]:
        return tuple(self._children.get(container_id, ()))

    def set_status(self, container_id: str, status: ContainerStatus) -> Container:
        """Change a container's status. An end state is final; only a QA release (a caller that
        recorded the signed decision) moves a container out of QUARANTINE, to ACTIVE."""
        c = self.container(container_id)
        if c.ended:
            raise GenealogyError(f"{container_id} is {c.status.value} (an end state)")
        if c.kind is ContainerKind.UNREGISTERED and status not in (ContainerStatus.QUARANTINE,
                                                                    ContainerStatus.DISPOSED):
            raise GenealogyError(f"{container_id} was found unregistered (COI-30): it has no identity in this cell; "
                                 "only its disposal (or its leaving the cell) ends its quarantine")
        if c.status is ContainerStatus.QUARANTINE and status not in (ContainerStatus.QUARANTINE,
                                                                    ContainerStatus.ACTIVE,
                                                                    ContainerStatus.DISPOSED):
            raise GenealogyError(f"{container_id} is in QUARANTINE: only a QA decision releases or disposes it")
        c = replace(c, status=status)
        self._containers[container_id] = c
        return c

    def set_location(self, container_id: str, location: str | None) -> Container:
        c = replace(self.container(container_id), location=location)
        self._containers[container_id] = c
        return c

    # ------------------------------------------------------------------ tracing
    def ancestors(self, container_id: str) -> Iterator[Container]:
        """Every ancestor once, nearest first (breadth first)."""
        seen: set[str] = set()
        frontier = list(self.container(container_id).parents)
        while frontier:
            nxt: list[str] = []
            for p in frontier:
                if p in seen:
                    continue
                seen.add(p)
                c = self.container(p)
                yield c
                nxt.extend(c.parents)
            frontier = nxt

    def trace(self, container_id: str) -> list[Container]:
        """The container and all its ancestors (the container first)."""
        return [self.container(container_id), *self.ancestors(container_id)]

    def apheresis_dins(self, container_id: str) -> tuple[str, ...]:
        """The DIN(s) of the apheresis bag(s) the container came from (LAB-02 back-tracking).

        Raises:
            GenealogyError: the container does not trace to any apheresis bag.
        """
        dins = sorted({c.din for c in self.trace(container_id)
                       if c.kind is ContainerKind.APHERESIS_BAG and c.din})
        if not dins:
            raise GenealogyError(f"{container_id} does not trace to an apheresis DIN")
        return tuple(dins)

    def descendants(self, container_id: str) -> list[Container]:
        """Every container made from this one (forward tracking), breadth first."""
        out: list[Container] = []
        seen: set[str] = set()
        frontier = list(self.children(container_id))
        while frontier:
            nxt: list[str] = []
            for cid in frontier:
                if cid in seen:
                    continue
                seen.add(cid)
                out.append(self.container(cid))
                nxt.extend(self.children(cid))
            frontier = nxt
        return out


# ----------------------------------------------------------------------------- locations
@dataclass(frozen=True)
class Location:
    id: str
    kind: LocationKind
    owner_coi: str | None = None
    owner_batch: str | None = None

    @property
    def storage(self) -> bool:
        return self.kind in STORAGE_KINDS


class LocationError(ValueError):
    """A location registration that would give a position to two COIs, or an unknown position."""


class LocationRegister:
    """The cell's positions; storage positions are registered to one COI at a time (COI-20)."""

    def __init__(self, locations: Iterable[tuple[str, LocationKind]] = ()) -> None:
        self._locs: dict[str, Location] = {}
        for lid, kind in locations:
            self.add(lid, kind)

    def add(self, location_id: str, kind: LocationKind) -> Location:
        if not location_id:
            raise LocationError("a location needs an id")
        if location_id in self._locs:
            raise LocationError(f"location {location_id} already exists")
        loc = Location(location_id, kind)
        self._locs[location_id] = loc
        return loc

    def get(self, location_id: str) -> Location | None:
        return self._locs.get(location_id)

    def location(self, location_id: str) -> Location:
        loc = self._locs.get(location_id)
        if loc is None:
            raise LocationError(f"unknown location {location_id}")
        return loc

    def owner(self, location_id: str) -> str | None:
        return self.location(location_id).owner_coi

    def assign(self, location_id: str, coi: str, batch: str) -> Location:
        """Register a storage position to ``coi`` (idempotent for the same COI).

        Raises:
            LocationError: not a storage position, or registered to another COI.
        """
        loc = self.location(location_id)
        if not loc.storage:
            raise LocationError(f"{location_id} is a {loc.kind.value}, not a storage position registered to a COI")
        if loc.owner_coi is not None and loc.owner_coi != coi:
            raise LocationError(f"{location_id} is registered to COI {loc.owner_coi} (batch {loc.owner_batch}); "
                                f"it cannot also be registered to {coi}")
        loc = replace(loc, owner_coi=coi, owner_batch=batch)
        self._locs[location_id] = loc
        return loc

    def release(self, location_id: str, genealogy: Genealogy | None = None) -> Location:
        """Free a storage position. Refused while a live container (not in an end state) is there."""
        loc = self.location(location_id)
        if genealogy is not None:
            inside = [c.id for c in genealogy.containers() if c.location == location_id and not c.ended]
            if inside:
                raise LocationError(f"{location_id} still holds {', '.join(inside)}: it cannot be released")
        loc = replace(loc, owner_coi=None, owner_batch=None)
        self._locs[location_id] = loc
        return loc

    def may_hold(self, location_id: str, coi: str) -> bool:
        """Whether a container of ``coi`` may be placed there (COI-20): a storage position must be
        registered to that COI; other positions take any COI (segregation of open work is SEG-01's)."""
        loc = self.location(location_id)
        return not loc.storage or loc.owner_coi == coi

    def owned_by(self, coi: str) -> list[Location]:
        return [loc for loc in self._locs.values() if loc.owner_coi == coi]
