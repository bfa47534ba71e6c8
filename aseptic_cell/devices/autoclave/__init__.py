"""The double-ended steam autoclave: ``config.py`` (unit and program models), ``contract.py``
(commands, interlock signals, hard interlock with the EN 285 door rules, OPC UA mapping),
``node.py`` (its ROS lifecycle node with the program action). Its process model is
``sim/autoclave.py`` (+ ``sim/autoclave_cycle.py``, ``sim/steam.py``). Importing this package
imports no ROS."""
