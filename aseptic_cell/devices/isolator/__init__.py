"""The isolator: ``config.py`` (its configuration model), ``contract.py`` (commands, interlock
signals, hard interlock, OPC UA mapping), ``node.py`` (its ROS lifecycle node). Its process
model is ``sim/isolator.py`` with one module per physical part (``sim/isolator_pressure.py``,
``_hatch``, ``_rtp``, ``_gloves``, ``_particles``). Importing this package imports no ROS."""
