"""The robot arm: ``config.py`` (DH table, limits, capsules, speed classes, poses),
``contract.py`` (commands, interlock signals, hard interlock), ``motion.py`` (the motion step of
the command path: planning, live keep-outs, certified check), ``node.py`` (its ROS lifecycle
node with the trajectory action). Its process model is ``sim/arm.py``; the collision check is
``aseptic_cell/motion``. Importing this package imports no ROS."""
