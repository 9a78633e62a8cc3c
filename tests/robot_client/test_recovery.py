"""Back to the start: a rate-limited, safety-checked return to the episode's first joint positions."""

import numpy as np
import pytest

from robot_client.recovery import ReturnToStart, StallReturn
from robot_client.safety import SafetyMonitor
from robot_client.sim.panda_mjcf import HOME_Q

DT = 1 / 15


def test_the_return_steps_toward_the_start_at_its_speed_with_the_gripper_open_and_ends_there():
    back = ReturnToStart(SafetyMonitor(), DT, joint_speed_rad_s=0.6)
    q = HOME_Q + np.array([0.3, -0.2, 0.0, 0.1, 0.0, -0.25, 0.05])
    back.begin(HOME_Q, t=0.0)
    ticks = 0
    while (command := back.command(q, ticks * DT)) is not None:
        assert not command.hold and command.gripper == 0.0
        assert np.abs(command.q_target - q).max() <= 0.6 * DT + 1e-9
        q, ticks = command.q_target, ticks + 1
    assert np.abs(q - HOME_Q).max() < 0.02 and not back.active
    assert ticks == pytest.approx(0.3 / (0.6 * DT), abs=1)  # the farthest joint sets the time


def test_a_return_that_cannot_get_there_gives_up_after_max_s():
    back = ReturnToStart(SafetyMonitor(), DT, max_s=2.0)
    q = HOME_Q + 0.5
    back.begin(HOME_Q, t=10.0)
    assert back.command(q, 11.9) is not None  # stuck (q never moves) but within its time
    assert back.command(q, 12.0) is None and not back.active


def test_a_target_the_safety_layer_refuses_becomes_a_hold():
    back = ReturnToStart(SafetyMonitor(), DT)
    q = HOME_Q.copy()
    q[3] = 0.5  # joint 4 far past its upper limit (about -0.07 rad): every step from here is refused
    back.begin(HOME_Q, t=0.0)
    command = back.command(q, 0.0)
    assert command.hold and "joint 4" in command.reason and "outside limits" in command.reason
    np.testing.assert_array_equal(command.q_target, q)


def test_bad_return_settings_are_refused():
    with pytest.raises(ValueError, match="must be > 0"):
        ReturnToStart(SafetyMonitor(), DT, joint_speed_rad_s=0.0)


def stalled_return(near_first_grasp_m, grasp_at=None, stuck_at=(0.4, 0.2, 0.35)):
    """A StallReturn fed 2 s of ticks: the fingers close at `grasp_at` (None: never), then the hand stays
    at `stuck_at` for 1.5 s, past its 1 s stall window."""
    ret = StallReturn(SafetyMonitor(), DT, stall_s=1.0, radius_m=0.08, max_returns=2, near_first_grasp_m=near_first_grasp_m)
    for i in range(8):
        at = np.array(grasp_at if grasp_at is not None else (0.3, 0.0, 0.6))
        ret.push(i * DT, HOME_Q, at, fingers_closed=grasp_at is not None and i == 7)
    for i in range(8, 30):
        ret.push(i * DT, HOME_Q, np.array(stuck_at), fingers_closed=False)
    return ret


@pytest.mark.parametrize("grasp_at, due", [(None, True),  # no grasp yet: still at the first stage
                                           ((0.45, 0.22, 0.30), True),  # stuck 7 cm from the first grasp
                                           ((0.40, -0.15, 0.25), False)])  # stuck 36 cm away: a later stage
def test_a_return_is_due_only_at_the_first_stage(grasp_at, due):
    assert stalled_return(0.10, grasp_at).due() is due
    assert stalled_return(None, grasp_at).due()  # no gate: any long stall


def test_returns_stop_at_max_returns_and_the_stall_is_counted_afresh_after_each():
    ret = stalled_return(None)
    q = HOME_Q + 0.1
    for n in (1, 2):
        assert ret.due()
        ret.begin(t=2.0 * n)
        assert not ret.due()  # under way
        while ret.command(q, 2.0 * n) is not None:
            q = HOME_Q.copy()  # arrived at the next tick
        assert not ret.due()  # arrival restarts the stall window
        for i in range(30):
            ret.push(10.0 * n + i * DT, q, np.array((0.3, 0.0, 0.6)))
    assert ret.count == 2 and not ret.due()
