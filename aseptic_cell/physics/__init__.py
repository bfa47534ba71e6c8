"""Physics of the arm in MuJoCo (``hardware: mujoco``): the generated URDF plus the isolator's
walls and equipment, position servos, contact reporting per configured link/obstacle pair."""
