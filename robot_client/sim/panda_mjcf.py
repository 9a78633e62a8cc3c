"""Panda + Franka Hand as MJCF, built from the official Franka DH parameters.

Low-poly primitives only (capsules/boxes): llvmpipe render time grows with vertex count.
Body frames follow the modified (Craig) DH convention, so `panda_link8` is the flange
exactly as Polymetis/franka_ros define it.
"""
from __future__ import annotations

import numpy as np

# Official Franka Emika Panda DH table (Craig convention), joint i uses a[i-1], alpha[i-1], d[i].
DH_A = (0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088)
DH_D = (0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0)
DH_ALPHA = (0.0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2)
FLANGE_D = 0.107

JOINT_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
JOINT_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
JOINT_VELOCITY_LIMITS = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
TORQUE_LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
HOME_Q = np.array([0.0, -np.pi / 4, 0.0, -3 * np.pi / 4, 0.0, np.pi / 2, np.pi / 4])

# Polymetis defaults from franka_hardware.yaml (also DROID's).
DEFAULT_KQ = np.array([40.0, 30.0, 50.0, 25.0, 35.0, 25.0, 10.0])
DEFAULT_KQD = np.array([4.0, 6.0, 5.0, 5.0, 3.0, 2.0, 1.0])
DEFAULT_KX = np.array([750.0, 750.0, 750.0, 15.0, 15.0, 15.0])
DEFAULT_KXD = np.array([37.0, 37.0, 37.0, 2.0, 2.0, 2.0])

HAND_YAW = -np.pi / 4  # panda_hand is panda_link8 rotated -45 deg about z
TCP_OFFSET = 0.1034  # fingertip centre along the hand z axis
GRIPPER_MAX_WIDTH = 0.08
FINGER_BASE_Z = 0.0584

ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")

# Approximate identified inertial parameters (mass, com) per link, after Gaz et al. 2019.
_LINK_INERTIA = (
    (4.97, (0.0039, 0.0021, -0.0476), (0.0703, 0.0706, 0.0091)),
    (0.65, (-0.0031, -0.0287, 0.0035), (0.0080, 0.0281, 0.0260)),
    (3.23, (0.0275, 0.0393, -0.0665), (0.0372, 0.0362, 0.0108)),
    (3.59, (-0.0532, 0.1044, 0.0275), (0.0259, 0.0196, 0.0283)),
    (1.23, (-0.0120, 0.0411, -0.0384), (0.0355, 0.0295, 0.0086)),
    (1.67, (0.0601, -0.0141, -0.0105), (0.0020, 0.0044, 0.0054)),
    (0.74, (0.0105, -0.0043, 0.0616), (0.0125, 0.0100, 0.0048)),
)

# Capsules (from, to, radius) in each link frame: a rough but recognisable Panda silhouette.
_LINK_CAPSULES = (
    (((0, 0, -0.19), (0, 0, -0.03), 0.062), ((0, 0, -0.06), (0, 0, 0.06), 0.06)),
    (((0, 0, -0.06), (0, 0, 0.06), 0.06), ((0, 0, 0), (0, -0.2, 0), 0.058)),
    (((0, 0, -0.15), (0, 0, -0.03), 0.055), ((0.0825, 0, -0.02), (0.0825, 0, 0.02), 0.055)),
    (((0, 0, -0.05), (0, 0, 0.05), 0.055), ((-0.0825, 0.06, 0), (-0.0825, 0.21, 0), 0.05)),
    (((0, 0, -0.26), (0, 0, -0.02), 0.05), ((0, 0.07, -0.14), (0, 0.07, -0.04), 0.03)),
    (((0, 0, -0.04), (0, 0, 0.03), 0.05), ((0, 0, 0), (0.088, 0, 0), 0.045)),
    (((0, 0, -0.02), (0, 0, 0.085), 0.045),),
)


def modified_dh_transform(a: float, alpha: float, d: float, theta: float) -> np.ndarray:
    """4x4 transform of one Craig-convention DH link: RotX(alpha) TransX(a) RotZ(theta) TransZ(d)."""
    ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
    return np.array([
        [ct, -st, 0.0, a],
        [st * ca, ct * ca, -sa, -sa * d],
        [st * sa, ct * sa, ca, ca * d],
        [0.0, 0.0, 0.0, 1.0],
    ])


def dh_forward_kinematics(q) -> np.ndarray:
    """Pose of panda_link8 (flange) in the base frame from the DH table: the reference the MJCF must match."""
    q = np.asarray(q, dtype=float)
    if q.shape != (7,):
        raise ValueError(f"expected 7 joint angles, got shape {q.shape}")
    pose = np.eye(4)
    for i in range(7):
        pose = pose @ modified_dh_transform(DH_A[i], DH_ALPHA[i], DH_D[i], q[i])
    return pose @ modified_dh_transform(0.0, 0.0, FLANGE_D, 0.0)


def _fmt(values) -> str:
    return " ".join(f"{float(v):.10g}" for v in values)


def _axis_angle_quat(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, dtype=float)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def panda_defaults_xml() -> str:
    """<default> classes: arm geoms collide with objects but not with each other."""
    return """
    <default class="panda">
      <joint armature="0.1" damping="0.0"/>
      <geom type="capsule" contype="2" conaffinity="1" group="1" material="panda_white" density="0"/>
      <default class="panda_finger">
        <geom type="box" contype="1" conaffinity="3" priority="2" condim="4" friction="1.5 0.01 0.001"
              solref="0.002 1" solimp="0.99 0.999 0.001" material="panda_dark"/>
      </default>
    </default>"""


def panda_assets_xml() -> str:
    return """
    <material name="panda_white" rgba="0.92 0.92 0.93 1" specular="0.3"/>
    <material name="panda_dark" rgba="0.15 0.15 0.17 1"/>"""


def panda_body_xml(base_pos=(0.0, 0.0, 0.0), wrist_camera_xml: str = "") -> str:
    """Nested <body> tree: link0 (base) .. link7, panda_link8 (flange), panda_hand with two fingers."""
    closing: list[str] = []
    parts = [
        f'<body name="panda_link0" pos="{_fmt(base_pos)}" childclass="panda" gravcomp="1">',
        '<inertial pos="-0.041 0 0.05" mass="0.63" diaginertia="0.003 0.003 0.003"/>',
        '<geom type="cylinder" size="0.09 0.04" pos="-0.04 0 0.04" material="panda_dark"/>',
        '<geom fromto="0 0 0.05 0 0 0.14" size="0.064"/>',
    ]
    closing.append("</body>")
    for i in range(7):
        alpha, a, d = DH_ALPHA[i], DH_A[i], DH_D[i]
        pos = (a, -np.sin(alpha) * d, np.cos(alpha) * d)
        quat = _axis_angle_quat((1, 0, 0), alpha)
        mass, com, inertia = _LINK_INERTIA[i]
        name = f"panda_link{i + 1}"
        parts.append(f'<body name="{name}" pos="{_fmt(pos)}" quat="{_fmt(quat)}" gravcomp="1">')
        parts.append(f'<inertial pos="{_fmt(com)}" mass="{mass}" diaginertia="{_fmt(inertia)}"/>')
        armature = 0.1 if i < 4 else 0.05
        parts.append(
            f'<joint name="{ARM_JOINTS[i]}" axis="0 0 1" range="{JOINT_LOWER[i]} {JOINT_UPPER[i]}" '
            f'armature="{armature}"/>'
        )
        for start, end, radius in _LINK_CAPSULES[i]:
            parts.append(f'<geom fromto="{_fmt(start)} {_fmt(end)}" size="{radius}"/>')
        closing.append("</body>")
    parts.append(f'<body name="panda_link8" pos="0 0 {FLANGE_D}" gravcomp="1">')
    closing.append("</body>")
    hand_quat = _axis_angle_quat((0, 0, 1), HAND_YAW)
    parts.append(f'<body name="panda_hand" quat="{_fmt(hand_quat)}" gravcomp="1">')
    closing.append("</body>")
    parts += [
        '<inertial pos="0 0 0.03" mass="0.73" diaginertia="0.001 0.0025 0.0017"/>',
        '<geom type="cylinder" size="0.04 0.008" pos="0 0 0.008" material="panda_dark"/>',
        '<geom type="box" size="0.022 0.1 0.025" pos="0 0 0.034"/>',
        f'<site name="tcp" pos="0 0 {TCP_OFFSET}" size="0.005" group="4"/>',
        wrist_camera_xml,
    ]
    for k, sign in ((1, 1), (2, -1)):
        parts += [
            f'<body name="panda_leftfinger" pos="0 0 {FINGER_BASE_Z}" gravcomp="1">' if k == 1 else
            f'<body name="panda_rightfinger" pos="0 0 {FINGER_BASE_Z}" gravcomp="1">',
            '<inertial pos="0 0 0.03" mass="0.015" diaginertia="2e-6 2e-6 1e-6"/>',
            f'<joint name="{FINGER_JOINTS[k - 1]}" type="slide" axis="0 {sign} 0" range="0 0.04" '
            'armature="0.05" damping="2"/>',
            f'<geom class="panda_finger" size="0.011 0.006 0.0275" pos="0 {sign * 0.006} 0.0275"/>',
            f'<geom class="panda_finger" size="0.008 0.004 0.012" pos="0 {sign * 0.012} 0.012"/>',
            "</body>",
        ]
    parts += list(reversed(closing))
    return "\n".join(p for p in parts if p)


def panda_actuators_xml() -> str:
    """Joint impedance as <position kp kv> servos (Polymetis default gains) + a width servo for the hand."""
    lines = []
    for i, joint in enumerate(ARM_JOINTS):
        lines.append(
            f'<position name="act_{joint}" joint="{joint}" kp="{DEFAULT_KQ[i]}" kv="{DEFAULT_KQD[i]}" '
            f'ctrlrange="{JOINT_LOWER[i]} {JOINT_UPPER[i]}" forcerange="{-TORQUE_LIMITS[i]} {TORQUE_LIMITS[i]}"/>'
        )
    lines.append(
        f'<position name="act_gripper" tendon="gripper_width" kp="3000" kv="40" ctrlrange="0 {GRIPPER_MAX_WIDTH}" '
        'forcerange="-20 20"/>'
    )
    return "\n".join(lines)


def panda_tendon_equality_xml() -> str:
    """Width = finger1 + finger2; fingers coupled so one servo drives a symmetric grip."""
    return f"""
  <tendon>
    <fixed name="gripper_width">
      <joint joint="{FINGER_JOINTS[0]}" coef="1"/>
      <joint joint="{FINGER_JOINTS[1]}" coef="1"/>
    </fixed>
  </tendon>
  <equality>
    <joint joint1="{FINGER_JOINTS[0]}" joint2="{FINGER_JOINTS[1]}" polycoef="0 1 0 0 0" solref="0.005 1"/>
  </equality>
  <contact>
    <exclude body1="panda_hand" body2="panda_leftfinger"/>
    <exclude body1="panda_hand" body2="panda_rightfinger"/>
    <exclude body1="panda_leftfinger" body2="panda_rightfinger"/>
  </contact>"""


def panda_robot_only_xml() -> str:
    """Arm + hand alone (no scene): the kinematic model IK and FK use."""
    return f"""<mujoco model="panda_kinematics">
  <compiler angle="radian" autolimits="true"/>
  <option gravity="0 0 0"/>
  <default>{panda_defaults_xml()}</default>
  <asset>{panda_assets_xml()}</asset>
  <worldbody>
{panda_body_xml()}
  </worldbody>
{panda_tendon_equality_xml()}
</mujoco>"""
