"""The VHP bio-decontamination unit: ``config.py`` (unit and cycle recipe models),
``contract.py`` (commands, interlock signals, hard interlock, OPC UA mapping), ``node.py`` (its
ROS lifecycle node with the cycle action). Its process model is ``sim/vhp.py``
(+ ``sim/vhp_cycle.py``, ``sim/vhp_physics.py``). Importing this package imports no ROS."""
