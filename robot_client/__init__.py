"""robot_client: robot and camera backends, the MuJoCo sim, IK, safety, the control loop, recording."""

import os

# MuJoCo picks its GL backend at first import; headless machines need EGL (GLFW fails there).
os.environ.setdefault("MUJOCO_GL", "egl")
