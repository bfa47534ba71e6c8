"""Test helper: publishes cell_interfaces/DeviceState on the topic given by `-p topic:=...`
every 0.1 s (steady clock), counting up in values[0]."""

import sys

from cell_interfaces.msg import DeviceState
from rclpy.node import Node

from aseptic_cell.nodes import rosutil


class Talker(Node):
    def __init__(self):
        super().__init__("talker")
        topic = self.declare_parameter("topic", "/helper/state").value
        self.pub = self.create_publisher(DeviceState, topic, 10)
        self.n = 0
        rosutil.wall_timer(self, 0.1, self.tick)

    def tick(self):
        self.n += 1
        self.pub.publish(
            DeviceState(
                device_id="talker",
                kind="helper",
                state="RUN",
                healthy=True,
                keys=["n"],
                values=[float(self.n)],
                faults=["W1"],
            )
        )


if __name__ == "__main__":
    sys.exit(rosutil.run_node(Talker))
