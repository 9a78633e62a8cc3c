"""StallDetector: a hand that stayed within a radius (and, if asked, a turn) for a whole window is stalled;
anything less is not."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from robot_client.control_loop import LoopConfig
from robot_client.stall import StallDetector

DT = 1 / 15


def feed(detector, positions):
    for i, p in enumerate(positions):
        detector.push(i * DT, p)
    return detector.stalled()


def test_a_hand_held_within_the_radius_for_the_window_is_stalled():
    still = [np.array([0.5, 0.0, 0.4]) + 0.005 * np.sin(i) for i in range(46)]  # 45 ticks = 3 s, 1 cm jitter
    assert feed(StallDetector(3.0, 0.03), still)
    assert not feed(StallDetector(3.0, 0.03), still[:45])  # 44 ticks: the window is not covered yet
    assert not feed(StallDetector(3.0, 0.005), still)  # the jitter is past a 5 mm radius


def test_motion_anywhere_in_the_window_is_no_stall_and_old_motion_is_forgotten():
    moving = [np.array([0.3 + 0.004 * i, 0.0, 0.4]) for i in range(46)]  # 4 mm a tick: 18 cm over the window
    assert not feed(StallDetector(3.0, 0.03), moving)
    detector = StallDetector(3.0, 0.03)
    jump = [np.array([0.5, 0.0, 0.4])] * 40 + [np.array([0.5, 0.0, 0.45])] + [np.array([0.5, 0.0, 0.45])] * 45
    for i, p in enumerate(jump):
        detector.push(i * DT, p)
        if i == 80:  # the 5 cm jump (tick 40) is still inside the window
            assert not detector.stalled()
    assert detector.stalled()  # 45 ticks since the jump: still again


def test_a_hand_turning_in_place_is_stalled_only_when_turns_are_not_checked():
    turning = [Rotation.from_euler("z", 0.6 * i, degrees=True).as_quat() for i in range(46)]  # 27 deg over 3 s
    at = np.array([0.5, 0.0, 0.4])

    def stalled(max_turn_deg, quats):
        detector = StallDetector(3.0, 0.03, max_turn_deg)
        for i, q in enumerate(quats):
            detector.push(i * DT, at, q)
        return detector.stalled()

    assert stalled(None, turning) and not stalled(10.0, turning) and stalled(30.0, turning)
    # A quaternion and its negative are one orientation; a wobble of 2 deg is no turn.
    wobble = [(-1) ** i * Rotation.from_euler("x", 2.0 * (i % 2), degrees=True).as_quat() for i in range(46)]
    assert stalled(10.0, wobble)


@pytest.mark.parametrize("fields, pattern", [({"stall_noise_scale": 1.5}, r"stall_noise_scale must be in \[0, 1\]"),
                                             ({"stall_window_s": 0.0}, r"stall_window_s and stall_radius_m must be > 0"),
                                             ({"stall_turn_deg": -5.0}, r"stall_turn_deg must be > 0 or None"),
                                             ({"stall_return_s": 0.0}, r"stall_return_s must be > 0 s or None"),
                                             ({"stall_return_max": 0}, r"stall_return_max must be >= 1"),
                                             ({"stall_return_radius_m": -0.1}, r"stall_return_radius_m > 0")])
def test_bad_stall_settings_are_refused_naming_the_field(fields, pattern):
    with pytest.raises(ValueError, match=pattern):
        LoopConfig(**fields)


def test_a_reset_detector_needs_a_whole_window_again():
    detector = StallDetector(window_s=1.0, radius_m=0.03)
    feed(detector, [np.zeros(3)] * 16)
    assert detector.stalled()
    detector.reset()
    feed(detector, [np.zeros(3)] * 10)  # fed again from t = 0: under a second
    assert not detector.stalled()
