"""Test helper: stands in for the supervisor's heartbeat, publishing cell_interfaces/BatchStatus
on /cell/batch/status every 0.1 s (steady clock), batch "B-LM" RUNNING in phase "PH-TEST"."""

import sys

from cell_interfaces.msg import BatchStatus
from rclpy.node import Node

from aseptic_cell.nodes import rosutil


class StatusTalker(Node):
    def __init__(self):
        super().__init__("status_talker")
        self.pub = self.create_publisher(BatchStatus, "/cell/batch/status", 10)
        rosutil.wall_timer(self, 0.1, self.tick)

    def tick(self):
        self.pub.publish(BatchStatus(batch_id="B-LM", state="RUNNING", phase="PH-TEST"))


if __name__ == "__main__":
    sys.exit(rosutil.run_node(StatusTalker))
