"""The device layer. One folder per device kind (``isolator/``, ``vhp/``, ``autoclave/``,
``arm/``: configuration model, contract, node); shared by all of them: the one command path
(``pipeline.py``), the refusal codes (``codes.py``), the command catalogue (``catalogue.py``,
``commands.py``), the ROS node base (``node.py``, ``cycle_node.py``) and the backend protocol
with its transports (``backend.py``, ``sim_backend.py``, ``opcua_backend.py``)."""
