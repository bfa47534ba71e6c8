"""Test helper: a minimal LifecycleNode standing in for a device node.

Parameters: record (path: JSON lines of transitions and commands, with wall timestamps),
fail_on (transition name to refuse, e.g. "configure"), state_period_s (0.2).
Publishes cell_interfaces/DeviceState on /cell/<name>/state (steady-clock timer) and
serves /cell/<name>/command (DeviceCommand; records every call).
"""

import json
import os
import sys
import time

from cell_interfaces.msg import DeviceState
from cell_interfaces.srv import DeviceCommand
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from aseptic_cell.nodes import rosutil


class Helper(LifecycleNode):
    def __init__(self):
        super().__init__("lc_helper")
        self.record_path = self.declare_parameter("record", "").value
        self.fail_on = self.declare_parameter("fail_on", "").value
        period = self.declare_parameter("state_period_s", 0.2).value
        self.pub = self.create_publisher(DeviceState, f"/cell/{self.get_name()}/state", 5)
        self.create_service(DeviceCommand, f"/cell/{self.get_name()}/command", self.on_command)
        rosutil.wall_timer(self, period, self.publish_state)
        self.record("started", pid=os.getpid())

    def record(self, event, **kw):
        if self.record_path:
            with open(self.record_path, "a") as fh:
                fh.write(json.dumps({"t": time.time(), "node": self.get_name(), "event": event, **kw}) + "\n")

    def publish_state(self):
        self.pub.publish(
            DeviceState(device_id=self.get_name(), kind="helper", state="RUN", stamp=rosutil.stamp_now(self))
        )

    def on_command(self, req, resp):
        self.record("command", command=req.command, reason=req.reason, user=req.user)
        resp.accepted = True
        resp.reason = "ok"
        return resp

    def _transition(self, name):
        self.record(name)
        if self.fail_on == name:
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state):
        return self._transition("configure")

    def on_activate(self, state):
        return self._transition("activate")

    def on_deactivate(self, state):
        return self._transition("deactivate")

    def on_cleanup(self, state):
        return self._transition("cleanup")

    def on_shutdown(self, state):
        return self._transition("shutdown")


def main(argv=None):
    rosutil.init_ros(argv)
    node = Helper()
    return rosutil.spin_until_shutdown(node, on_shutdown=[lambda: node.record("exit")])


if __name__ == "__main__":
    sys.exit(main())
