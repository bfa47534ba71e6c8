"""Cell OPC UA server for MES/SCADA (issue 5 item 3): secure by default, PackML-style model.

See docs/opcua_cell_server.md. Entry points: ``python -m aseptic_cell.opcua.server`` and the
ROS node ``aseptic_cell.nodes.opcua_server_node``.
"""
