"""uwm_robot: the UWM network, sampling modes, checkpoints, normalizers, rotations, protocol and data."""
