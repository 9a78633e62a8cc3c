"""The hand rises clear of what it let go of before it moves sideways (robot_client.release_lift)."""

import numpy as np
import pytest

from robot_client.control_loop import LoopConfig
from robot_client.release_lift import RISE, ReleaseLift
from robot_client.settings import DEFAULT_PATH, load_settings
from robot_client.sim import panda_mjcf as panda
from robot_client.sim.env import SimEnv
from robot_client.tasks.rice_cooker import cup_position

from test_control_loop import ScriptedPolicy, make_loop

AWAY = np.array([0.4, -0.5, 0.0, 0.1, 0.0, 0.2, 0.0])  # the policy leaves sideways, turning, fingers open


SHUT = np.r_[np.zeros(6), 1.0]
GRASP, PULLED = np.array([0.5, 0.2, 0.40]), np.array([0.58, 0.2, 0.45])  # the hand moved 9 cm holding the bar


def test_a_release_of_something_pulled_holds_sideways_motion_until_the_hand_is_clear():
    lift = ReleaseLift(clearance_m=0.08, max_s=3.0)
    np.testing.assert_array_equal(lift.filter(SHUT, GRASP, 0.03, 0.0), SHUT)  # closing: untouched
    pull = np.r_[0.3, 0.0, 0.2, 0, 0, 0, 1.0]
    np.testing.assert_array_equal(lift.filter(pull, PULLED, 0.016, 0.5), pull)  # holding: untouched
    opening = lift.filter(AWAY, PULLED, 0.016, 0.6)  # the fingers are told to open: still on the bar
    np.testing.assert_array_equal(opening, [0, 0, 0, 0, 0, 0, 0])
    assert lift.lifting and lift.lifts == 1
    opened = lift.filter(AWAY, PULLED, 0.04, 0.8)  # open: rise, nothing sideways, no turn
    np.testing.assert_array_equal(opened, [0, 0, RISE, 0, 0, 0, 0])
    climbing = lift.filter(np.array([0, 0, 0.8, 0, 0, 0, 0.0]), PULLED + [0, 0, 0.05], 0.07, 1.0)
    assert climbing[2] == 0.8  # a faster rise of the policy's own is kept
    clear = lift.filter(AWAY, PULLED + [0, 0, 0.08], 0.07, 1.1)
    np.testing.assert_array_equal(clear, AWAY)  # 8 cm up: the policy's action as it was
    assert not lift.lifting and lift.lifts == 1


def test_no_lift_after_a_flick_of_the_fingers_a_grasp_of_nothing_past_the_deadline_or_on_a_new_grasp():
    lift = ReleaseLift(clearance_m=0.08, max_s=1.0)
    lift.filter(SHUT, GRASP, 0.05, 0.0)  # shut on the cup for a tick, the hand where it was
    np.testing.assert_array_equal(lift.filter(AWAY, GRASP + [0, 0, 0.01], 0.05, 0.1), AWAY)
    lift.filter(SHUT, GRASP, 0.001, 0.2)  # shut on nothing, then moved
    np.testing.assert_array_equal(lift.filter(AWAY, PULLED, 0.001, 0.3), AWAY)
    assert lift.lifts == 0
    lift.filter(SHUT, GRASP, 0.05, 0.4)  # the cup, carried
    assert lift.filter(AWAY, PULLED, 0.05, 0.5)[1] == 0 and lift.lifting
    np.testing.assert_array_equal(lift.filter(AWAY, PULLED, 0.07, 1.6), AWAY)  # 1 s passed: given up
    lift.filter(SHUT, GRASP, 0.05, 1.7)
    assert lift.filter(AWAY, PULLED, 0.05, 1.8)[1] == 0
    regrasp = np.r_[0.2, 0.0, 0.0, 0, 0, 0, 1.0]
    np.testing.assert_array_equal(lift.filter(regrasp, PULLED, 0.05, 1.9), regrasp)  # closing again: the policy's
    assert not lift.lifting and lift.lifts == 2


def test_the_shipped_settings_lift_8_cm_once_off_the_lids_bar():
    control = load_settings(DEFAULT_PATH).control  # docs/results.md, sessions 57-59
    assert control.release_lift_m == 0.08 and control.release_lift_max == 1


def test_a_lift_limited_to_one_rises_off_the_bar_and_not_off_the_cup():
    lift = ReleaseLift(clearance_m=0.08, max_s=3.0, max_lifts=1)
    for start in (0.0, 10.0):  # the bar's pull, then the cup's carry: each let go of after moving 9 cm
        lift.filter(SHUT, GRASP, 0.03, start)
        lift.filter(SHUT, PULLED, 0.016, start + 0.5)
        lift.filter(AWAY, PULLED, 0.016, start + 0.6)
        lift.filter(AWAY, PULLED + [0, 0, 0.1], 0.07, start + 1.0)  # up and clear
    assert lift.lifts == 1
    np.testing.assert_array_equal(lift.filter(AWAY, PULLED, 0.07, 11.1), AWAY)  # after the cup: straight off
    with pytest.raises(ValueError, match="max_lifts >= 1"):
        ReleaseLift(0.08, 3.0, max_lifts=0)
    with pytest.raises(ValueError, match="release_lift_max >= 1"):
        LoopConfig(release_lift_m=0.08, release_lift_max=0)


@pytest.mark.parametrize("clearance", [0.0, -0.1])
def test_a_lift_that_cannot_clear_is_refused(clearance):
    with pytest.raises(ValueError, match="clearance_m > 0"):
        ReleaseLift(clearance, 3.0)
    with pytest.raises(ValueError, match="release_lift_m must be > 0"):
        LoopConfig(release_lift_m=clearance)


class PickThenLeavePolicy(ScriptedPolicy):
    """Down onto the cup with the fingers open, close on it, carry it 10 cm up, then let go and leave
    sideways (+y)."""

    def __init__(self, cup):
        super().__init__()
        self.grasp_at = np.asarray(cup, float) + [0.0, 0.0, panda.TCP_OFFSET]  # flange over the cup's centre
        self.held_requests = 0
        self.carried = False

    def infer(self, obs, seed=None, noise_scale=None):
        pos, width = obs.state["ee_pos"][-1], float(obs.state["gripper_width"][-1, 0])
        err = self.grasp_at - pos
        self.carried |= self.held_requests >= 3 and pos[2] > self.grasp_at[2] + 0.1
        if self.carried:
            self.action = np.array([0.0, 0.4, 0.0, 0, 0, 0, 0.0])
        elif self.held_requests >= 3:
            self.action = np.array([0.0, 0.0, 0.3, 0, 0, 0, 1.0])
        elif self.held_requests or np.linalg.norm(err) < 0.006:
            self.held_requests += width < 0.06  # the fingers have stopped on the cup
            self.action = np.array([0, 0, 0, 0, 0, 0, 1.0])
        else:
            self.action = np.r_[np.clip(0.12 * err / 0.075, -0.3, 0.3), 0, 0, 0, 0.0]  # slow: chunks arrive 3 ticks late
        return super().infer(obs, seed)


@pytest.mark.parametrize("lift_m", [None, 0.08])
def test_in_the_sim_a_hand_letting_go_of_the_cup_rises_clear_before_it_leaves(lift_m):
    env = SimEnv("rice_cooker", condition="ID", seed=0)
    try:
        policy = PickThenLeavePolicy(cup_position(env.world))
        loop = make_loop(env, policy, max_steps=260, execute_k=4, release_lift_m=lift_m)
        records = []
        loop.on_step = lambda rec, frames: records.append(rec)
        result = loop.run()
    finally:
        env.close()
    grips = np.array([r.command.gripper for r in records])
    held = np.flatnonzero(grips > 0.5)
    assert len(held) and records[held[0] + 20].gripper_width > 0.04  # closed on the 5 cm cup
    release = held[-1] + 1
    pos = np.array([r.ee_pos for r in records[release:]])
    left = np.flatnonzero(pos[:, 1] - pos[0, 1] > 0.02)[0]  # the first tick 2 cm to the side
    risen = pos[left, 2] - pos[0, 2]
    if lift_m is None:
        assert result.stats["release_lifts"] == 0 and risen < 0.02  # straight off sideways, as low as it held
    else:
        assert result.stats["release_lifts"] == 1 and risen > 0.07  # up 8 cm first
