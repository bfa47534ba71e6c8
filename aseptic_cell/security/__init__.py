"""The authenticated command plane (issue 12): per-cell keys, the trust list, signed requests.

The Fast DDS in the PyPI wheels has no DDS-Security, so authentication is done above the
transport: every request to a device node or to the supervisor carries an ``auth`` field, an
HMAC-SHA256 envelope over the whole request (its CDR serialisation) and the service it is
sent to, made with the sending principal's key, with a time stamp and a nonce (replay
protection). The trust list (``trust.yaml`` in the security directory) names the principals
and what each may do: the supervisor commands devices, the lifecycle manager may only put
them in their safe state, the front ends (HMI, OPC UA server, CLI) may only call the
supervisor's operator services, which verify the user, the role and e-signatures themselves.
IEC 62443-3-3 SR 1.1/1.2 (identification and authentication of users and software
processes), SR 3.1 (communication integrity) [IEC62443-3-3].
"""

from .envelope import AuthRefused, Signer, Verified, Verifier, canonical_json
from .keys import (
    FRONT_ENDS,
    PRINCIPALS,
    SECURITY_ENV,
    SecurityError,
    TrustList,
    default_security_dir,
    init_security_dir,
    load_trust,
)

__all__ = [
    "FRONT_ENDS",
    "PRINCIPALS",
    "SECURITY_ENV",
    "AuthRefused",
    "SecurityError",
    "Signer",
    "TrustList",
    "Verified",
    "Verifier",
    "canonical_json",
    "default_security_dir",
    "init_security_dir",
    "load_trust",
]
