"""The counter (process equipment, issue 14 item 1): ``config.py``, ``contract.py``.
Its process model is ``sim/process_equipment.py``; its ROS node runs in the process-equipment process
(``aseptic_cell/devices/process_node.py``)."""
