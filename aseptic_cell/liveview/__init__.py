"""Foxglove live view of the running cell (``cellctl run --foxglove``): the cell's ROS topics over
the Foxglove WebSocket protocol (PyPI ``foxglove-sdk``) on loopback, plus the isolator as a 3D scene."""
