"""OPC UA for the cell.

Device level (this package outside ``server/``): ``config`` (config/opcua.yaml), ``model``
(the device address-space contract), ``emulator`` (``cellctl emulate``: SimCell behind one
asyncua server per device), ``cli`` (``add_emulate_parser``). The bridge backend is
:mod:`aseptic_cell.devices.opcua_backend`. ``server/``: the secure cell server for MES/SCADA.
"""
