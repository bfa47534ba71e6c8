"""ROS 2 nodes of the cell (thin adapters over the ROS-free core) and their shared helpers."""
