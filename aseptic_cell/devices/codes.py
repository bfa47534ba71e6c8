"""The one catalogue of command refusal codes, shared by every layer.

The same condition has the same code wherever it is detected: in the supervisor's command
path, in a device node's hard interlocks (:mod:`aseptic_cell.devices.pipeline`) and in the
device's own controller (the process models of ``sim/``, which stand for a PLC). A code is
a stable identifier for records, HMIs and tests; the reason that travels with it is the
human-readable sentence.

``RefusalCode`` is a :class:`enum.StrEnum`, so a code compares equal to its string value
on the wire (ROS messages, OPC UA, JSON records).
"""

from __future__ import annotations

import enum


class RefusalCode(enum.StrEnum):
    """Why a command was not carried out (``OK`` for an accepted one)."""

    OK = "OK"
    # --- the command path (every device) ---------------------------------------------
    INVALID = "INVALID"  # unknown command/argument, wrong type, NaN/inf, unknown pose
    NOT_CONFIGURED = "NOT_CONFIGURED"  # the node has no backend (lifecycle unconfigured)
    NOT_ACTIVE = "NOT_ACTIVE"  # lifecycle INACTIVE: connected, nothing moves
    LATCHED = "LATCHED"  # held in its safe state until an explicit recovery
    COMM_STALE = "COMM_STALE"  # no fresh data: nothing moves on data we cannot trust
    COMM_LOST = "COMM_LOST"  # the transport is down: the command could not be sent
    TIMEOUT = "TIMEOUT"  # the device did not answer in time
    INTERNAL_ERROR = "INTERNAL_ERROR"  # a check raised unexpectedly: refused safely, logged
    UNAUTHENTICATED = "UNAUTHENTICATED"  # no valid signed envelope of a trusted principal (issue 12)
    # --- isolator (IL-01 hatch, IL-02/03 RTP, IL-05 gloves) -----------------------------
    HATCH_OTHER_DOOR_OPEN = "HATCH_OTHER_DOOR_OPEN"
    HATCH_SEAL_DEFLATED = "HATCH_SEAL_DEFLATED"
    HATCH_DWELL = "HATCH_DWELL"
    DP_OUT_OF_BAND = "DP_OUT_OF_BAND"
    RTP_NO_BETA = "RTP_NO_BETA"
    RTP_ALPHA_OPEN = "RTP_ALPHA_OPEN"
    GLOVE_FAILED = "GLOVE_FAILED"
    # isolator controller (sim/isolator*.py): its own interlocks beyond IL-01..05
    HATCH_NOT_DECONTAMINATED = "HATCH_NOT_DECONTAMINATED"  # door B before a pass-box cycle
    HATCH_NOT_SEALED = "HATCH_NOT_SEALED"  # chamber decontamination with a door not closed and sealed
    HATCH_DECON_RUNNING = "HATCH_DECON_RUNNING"  # the chamber's decontamination cycle is running
    HATCH_WIPE_DOWN_NOT_ALLOWED = "HATCH_WIPE_DOWN_NOT_ALLOWED"  # the site does not allow a manual wipe-down
    RTP_OCCUPIED = "RTP_OCCUPIED"  # another beta is already docked
    RTP_BETA_NOT_LOCKED = "RTP_BETA_NOT_LOCKED"  # beta docked but not locked (IL-02)
    BETA_NOT_STERILE = "BETA_NOT_STERILE"  # beta container's sterile status is not 'sterile'
    BETA_LOCK_FAILED = "BETA_LOCK_FAILED"  # the beta lock does not engage (device fault)
    BETA_LOCKED = "BETA_LOCKED"  # undock with the beta still locked
    GLOVE_IN_USE = "GLOVE_IN_USE"  # arm in glove (extend, replace, test)
    GLOVE_EXTENDED = "GLOVE_EXTENDED"  # glove extended on its rack (use, test)
    GLOVE_TEST_RUNNING = "GLOVE_TEST_RUNNING"  # glove integrity test in progress
    LEAK_TEST_RUNNING = "LEAK_TEST_RUNNING"  # enclosure leak test in progress: nothing opens
    LEAK_TEST_NOT_SEALED = "LEAK_TEST_NOT_SEALED"  # leak test with a door, port or glove open
    DECON_CYCLE_ACTIVE = "DECON_CYCLE_ACTIVE"  # leak test during a VHP cycle or aeration
    # --- autoclave (IL-10/11, EN 285 doors) ---------------------------------------------
    AC_CYCLE_RUNNING = "AC_CYCLE_RUNNING"
    AC_OTHER_DOOR_OPEN = "AC_OTHER_DOOR_OPEN"
    AC_HOT = "AC_HOT"
    AC_PRESSURISED = "AC_PRESSURISED"
    AC_UNLOAD_NOT_RELEASED = "AC_UNLOAD_NOT_RELEASED"
    AC_DOOR_NOT_SEALED = "AC_DOOR_NOT_SEALED"
    AC_DOOR_MOVING = "AC_DOOR_MOVING"  # a door command while the door is travelling/sealing
    AC_E_STOP = "AC_E_STOP"  # e-stop or power loss: no cycle start, doors stay locked
    AC_TEST_NOT_CURRENT = "AC_TEST_NOT_CURRENT"  # sterilising program without a current Bowie-Dick / leak test PASS
    # --- VHP unit -----------------------------------------------------------------------
    VHP_CYCLE_ACTIVE = "VHP_CYCLE_ACTIVE"
    VHP_E_STOP = "VHP_E_STOP"  # e-stop or power loss: no cycle start
    # --- arm (robot rules, ISO 10218-1 protective stop) ---------------------------------
    PROTECTIVE_STOP = "PROTECTIVE_STOP"
    DRIVES_OFF = "DRIVES_OFF"
    NO_CELL_STATE = "NO_CELL_STATE"  # keep-out zones cannot be established: no motion
    MOTION_COLLISION = "MOTION_COLLISION"  # a configuration or a motion between samples collides
    MOTION_LIMIT = "MOTION_LIMIT"  # joint position, velocity or acceleration limit
    MOTION_SPEED = "MOTION_SPEED"  # TCP speed above the speed class
    MOTION_NO_APPROVED_PATH = "MOTION_NO_APPROVED_PATH"  # straight move collides, no approved library path
    # arm controller (sim/arm.py): its own trajectory checks, finer than MOTION_LIMIT/SPEED
    ARM_MOVING = "ARM_MOVING"  # a trajectory is still being executed
    ARM_FAULT_ACTIVE = "ARM_FAULT_ACTIVE"  # reset while the arm fault is still present
    TRAJECTORY_START_MISMATCH = "TRAJECTORY_START_MISMATCH"  # first sample away from the arm
    JOINT_POSITION_LIMIT = "JOINT_POSITION_LIMIT"  # a sample outside the joint range
    JOINT_VELOCITY_LIMIT = "JOINT_VELOCITY_LIMIT"  # joint velocity between samples
    JOINT_ACCELERATION_LIMIT = "JOINT_ACCELERATION_LIMIT"  # joint acceleration between samples
    TCP_SPEED_LIMIT = "TCP_SPEED_LIMIT"  # TCP speed above the speed class (or reduced mode)
    COLLISION_CHECK_FAILED = "COLLISION_CHECK_FAILED"  # the motion checker refused the trajectory
    # --- process equipment (issue 14 item 1; sim/incubator.py, sim/process_equipment.py) ---
    INC_SLOT_INVALID = "INC_SLOT_INVALID"  # not a slot number 1..slots
    INC_SLOT_UNKNOWN = "INC_SLOT_UNKNOWN"  # the slot's assignment is not reported
    INC_SLOT_ASSIGNED = "INC_SLOT_ASSIGNED"  # the slot belongs to another batch
    INC_SLOT_NOT_ASSIGNED = "INC_SLOT_NOT_ASSIGNED"  # load into a slot bound to no batch
    INC_SLOT_OCCUPIED = "INC_SLOT_OCCUPIED"  # release with a container inside / load over another container
    INC_COI_MISMATCH = "INC_COI_MISMATCH"  # a container of another COI into the slot (COI-20)
    INC_CONTAINER_NOT_IN_SLOT = "INC_CONTAINER_NOT_IN_SLOT"  # unload of a container the slot does not hold
    WELD_COI_MISMATCH = "WELD_COI_MISMATCH"  # never connect two COIs (SEG-03, COI-10)
    WELDER_BUSY = "WELDER_BUSY"
    SEALER_BUSY = "SEALER_BUSY"
    CENTRIFUGE_BUSY = "CENTRIFUGE_BUSY"
    CFG_IMBALANCE = "CFG_IMBALANCE"  # load vs counterweight over the rotor's tolerance
    COUNTER_BUSY = "COUNTER_BUSY"
    SCAN_STATION_OCCUPIED = "SCAN_STATION_OCCUPIED"  # a container put where another one stands


def motion_code(kind: str) -> str:
    """The refusal code of a failed motion check of ``kind`` (``collision``, ``limit``, ``speed``).

    A kind without its own member still gets a stable ``MOTION_<KIND>`` string.
    """
    name = f"MOTION_{kind.upper()}"
    return RefusalCode(name) if name in RefusalCode.__members__ else name
