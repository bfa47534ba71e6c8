"""A rogue process on the cell's DDS domain (issue 12 attack suite): a plain rclpy node with no
key of the cell, calling the device and operator services directly.

Usage: python rogue.py PLAN.json  — PLAN is a list of {"kind": "service"|"action"|"publish", "type":
"cell_interfaces.srv.DeviceCommand", "name": "/cell/operate", "fields": {...},
"forge": principal (optional: sign with a random key claiming to be that principal)}.
Prints one JSON line: a list of {"name", "answered", "accepted", "code", "reason"}.
"""

from __future__ import annotations

import importlib
import json
import secrets
import sys
import time


def _type(path: str):
    mod, _, name = path.rpartition(".")
    return getattr(importlib.import_module(mod), name)


def _forge(principal: str, target: str, msg) -> None:
    """An envelope in the right format, made with a guessed key."""
    from aseptic_cell.security.envelope import _b64, _body, _mac

    head = {"v": 1, "p": principal, "t": time.time(), "n": secrets.token_hex(12)}
    header = _b64(json.dumps(head, separators=(",", ":"), sort_keys=True).encode())
    msg.auth = f"{header}.{_mac(secrets.token_bytes(32), target, header, _body(msg))}"


def main() -> int:
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    plan = json.loads(open(sys.argv[1], encoding="utf-8").read())
    rclpy.init()
    node = rclpy.create_node(f"rogue_{secrets.token_hex(3)}")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    out = []
    try:
        for step in plan:
            t = _type(step["type"])
            name = step["name"]
            res = {"name": name, "answered": False, "accepted": False, "code": "", "reason": ""}
            if step["kind"] == "publish":  # a forged message on a topic, a few times
                pub = node.create_publisher(t, name, 10)
                for _ in range(20):
                    pub.publish(t(**step["fields"]))
                    ex.spin_once(timeout_sec=0.05)
                res.update(answered=True)
            elif step["kind"] == "service":
                req = t.Request(**step["fields"])
                if step.get("forge"):
                    _forge(step["forge"], name, req)
                client = node.create_client(t, name)
                deadline = time.monotonic() + 30
                while not client.service_is_ready() and time.monotonic() < deadline:
                    ex.spin_once(timeout_sec=0.05)
                for _ in range(10):  # let the reply path match as well
                    ex.spin_once(timeout_sec=0.03)
                fut = client.call_async(req)
                ex.spin_until_future_complete(fut, timeout_sec=20)
                r = fut.result()
                if r is not None:
                    res.update(answered=True, accepted=bool(r.accepted), code=getattr(r, "code", ""),
                               reason=r.reason)
            else:
                goal = t.Goal(**step["fields"])
                ac = ActionClient(node, t, name)
                deadline = time.monotonic() + 30
                while not ac.server_is_ready() and time.monotonic() < deadline:
                    ex.spin_once(timeout_sec=0.05)
                for _ in range(10):
                    ex.spin_once(timeout_sec=0.03)
                sent = ac.send_goal_async(goal)
                ex.spin_until_future_complete(sent, timeout_sec=20)
                gh = sent.result()
                if gh is not None:
                    res.update(answered=True, accepted=bool(gh.accepted))
                    if gh.accepted:
                        got = gh.get_result_async()
                        ex.spin_until_future_complete(got, timeout_sec=30)
                        r = got.result().result if got.result() is not None else None
                        if r is not None:
                            res.update(accepted=bool(getattr(r, "success", False)), reason=r.reason,
                                       code=getattr(r, "state", ""))
            out.append(res)
    finally:
        ex.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
