"""Robot backends behind the Polymetis RobotInterface/GripperInterface surface.

`polymetis`: the real Franka through Polymetis (imported lazily; a conda package on the NUC) and
`make_robot("sim" | "franka", ...)`, the factory the CLI uses. The sim backend itself lives in
`robot_client.sim.polymetis_api`.
"""
