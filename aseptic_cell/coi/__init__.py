"""Chain of identity and custody (issue 14 item 5): ISBT 128 identifiers (:mod:`.isbt128`),
COI → batch → container genealogy and COI-registered positions (:mod:`.model`), scan
verification and the COI-30 mismatch response (:mod:`.verify`), the custody log in the batch
record (:mod:`.custody`), the per-cell API the executive calls (:mod:`.cell`), and the site
parameters in ``config/coi.yaml`` (:mod:`.config`)."""

from .cell import ChainOfIdentity, Outcome
from .config import CoiConfig, load_coi_config
from .custody import (
    CustodyError,
    CustodyEvent,
    CustodyEventType,
    CustodyLog,
    check_custody,
    completeness,
)
from .isbt128 import (
    DIN,
    SEC,
    IdentifierError,
    check_character,
    check_flags,
    make_din,
    mod37_2,
    parse_coi_id,
    parse_din,
    parse_sec,
)
from .model import (
    Batch,
    Container,
    ContainerKind,
    ContainerStatus,
    Genealogy,
    GenealogyError,
    Location,
    LocationError,
    LocationKind,
    LocationRegister,
)
from .verify import (
    Action,
    Code,
    Expectation,
    MismatchResponse,
    ScanPolicy,
    ScanResult,
    Verdict,
    decode_label,
    encode_label,
    verify_connect,
    verify_label_readback,
    verify_receipt,
    verify_scan,
)

__all__ = [
    "Action", "Batch", "ChainOfIdentity", "Code", "CoiConfig", "Container", "ContainerKind", "ContainerStatus",
    "CustodyError", "CustodyEvent", "CustodyEventType", "CustodyLog", "DIN", "Expectation", "Genealogy",
    "GenealogyError", "IdentifierError", "Location", "LocationError", "LocationKind", "LocationRegister",
    "MismatchResponse", "Outcome", "SEC", "ScanPolicy", "ScanResult", "Verdict", "check_character", "check_custody",
    "check_flags", "completeness", "decode_label", "encode_label", "load_coi_config", "make_din", "mod37_2",
    "parse_coi_id", "parse_din", "parse_sec", "verify_connect", "verify_label_readback", "verify_receipt",
    "verify_scan",
]
