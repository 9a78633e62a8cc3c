"""Each task's scripted expert succeeds in lockstep; doing nothing fails; configs load strictly."""
import numpy as np
import pytest

from robot_client.sim.env import SimEnv
from robot_client.tasks import TASK_NAMES, load_task
from robot_client.tasks.base import load_task_config

EXPERT_SEEDS = {"rice_cooker": [1], "stack_bowls": [2], "block_cabinet": [3]}


@pytest.mark.parametrize("task", TASK_NAMES)
def test_expert_succeeds_on_fixed_seed(task):
    for seed in EXPERT_SEEDS[task]:
        with SimEnv(task, seed=seed, camera_names=()) as env:
            result = env.task.expert(env).run(record=True)
            assert result.success, f"{task} seed {seed}"
            actions = np.array(result.actions)
            assert actions.shape[1] == 7 and np.all(np.abs(actions[:, :6]) <= 1.0)
            assert np.all((actions[:, 6] >= 0) & (actions[:, 6] <= 1)) and actions[:, 6].max() == 1.0


@pytest.mark.parametrize("task", TASK_NAMES)
def test_doing_nothing_fails(task):
    with SimEnv(task, seed=0, camera_names=()) as env:
        env.robot.start_joint_impedance()
        for _ in range(int(5 * env.task.control_hz)):
            env.clock.sleep(1 / env.task.control_hz)
            assert not env.check_success()


def test_task_object_carries_instruction_rate_duration_and_conditions():
    task = load_task("rice_cooker")
    assert task.control_hz == 15 and task.max_duration_s > 0 and "rice cooker" in task.instruction
    assert set(task.conditions) == {"ID", "L1", "L2", "B1", "B2", "C1", "C2"}
    with pytest.raises(ValueError, match="no condition 'X9'"):
        task.condition("X9")


def test_seeds_randomise_the_initial_state_reproducibly():
    states = [SimEnv("stack_bowls", seed=s, camera_names=()).initial_state for s in (0, 0, 1)]
    assert states[0] == states[1] and states[0] != states[2]


def test_unknown_config_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ninstruction: y\ncontrol_rate: 15\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown key\(s\) \['control_rate'\]"):
        load_task_config(path)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("make_coffee")


def _grasp_commands(actions) -> int:
    closed = np.array(actions)[:, 6] == 1.0
    return int((closed[1:] & ~closed[:-1]).sum())


# The plain expert fails a few seeds in a hundred (docs/results.md), seed 0 among them under mujoco 4;
# the comparisons with it need a seed where it succeeds.
COMPARE_SEED = 1


def test_rice_cooker_expert_recovers_from_a_practice_miss():
    """The first cup grasp aimed off on purpose closes on nothing; the expert re-opens, re-aims and succeeds."""
    with SimEnv("rice_cooker", seed=COMPARE_SEED, camera_names=()) as env:
        plain = env.task.expert(env).run(record=True)
    with SimEnv("rice_cooker", seed=COMPARE_SEED, camera_names=()) as env:
        practised = env.task.expert(env, practice_miss_prob=1.0).run(record=True)
    assert plain.success and practised.success
    # bar, cup, closed-finger push: one grasp more for the retry
    assert _grasp_commands(plain.actions) == 3 and _grasp_commands(practised.actions) == 4
    with SimEnv("rice_cooker", seed=0, camera_names=()) as env, pytest.raises(ValueError, match="practice_miss_prob"):
        env.task.expert(env, practice_miss_prob=1.5)


def _descent_to_cup(off_centre_prob: float) -> tuple[bool, np.ndarray]:
    """(success, rows of [flange height, flange xy distance from the cup]) from the first time the hand is
    within 8 cm of the cup down to its lowest point there (the grasp)."""
    rows = []
    with SimEnv("rice_cooker", seed=COMPARE_SEED, camera_names=()) as env:
        cup = np.asarray(env.initial_state["cup_xy"])

        def on_step(step, action):
            pos = np.asarray(env.robot.get_ee_pose()[0], dtype=float)
            if np.linalg.norm(pos[:2] - cup) < 0.08:
                rows.append((pos[2], np.linalg.norm(pos[:2] - cup)))

        result = env.task.expert(env, off_centre_prob=off_centre_prob).run(on_step=on_step)
    rows = np.array(rows)
    return result.success, rows[:np.argmin(rows[:, 0]) + 1]


def test_rice_cooker_expert_steers_back_from_an_off_centre_approach():
    """The hand arrives 1.5-4 cm off centre above the cup, then corrects on the way down: the demo holds
    the correction (off centre high up, centred lower down) that the plain one lacks, and still grasps."""
    plain_ok, plain = _descent_to_cup(0.0)
    off_ok, off = _descent_to_cup(1.0)
    assert plain_ok and off_ok
    band = lambda rows, lo, hi: rows[(rows[:, 0] > lo) & (rows[:, 0] < hi), 1]  # noqa: E731
    arrival_off, arrival_plain = band(off, 0.235, 0.26).max(), band(plain, 0.235, 0.26).max()
    assert arrival_plain < 0.02 and arrival_off > arrival_plain + 0.01  # arrival height: 1.5-4 cm off on purpose
    assert band(off, 0.19, 0.21).max() < 0.01 and band(plain, 0.19, 0.21).max() < 0.01  # half way down
    assert off[-1, 1] < 0.008 and plain[-1, 1] < 0.008  # the grasp
    with SimEnv("rice_cooker", seed=0, camera_names=()) as env, pytest.raises(ValueError, match="off_centre_prob"):
        env.task.expert(env, off_centre_prob=-0.1)


def _lid_angles(lid_slip_prob: float) -> tuple[bool, np.ndarray, tuple]:
    """(success, the lid angle every tick, the bar's contact type and affinity at the end)."""
    from robot_client.tasks.rice_cooker import lid_angle

    with SimEnv("rice_cooker", seed=COMPARE_SEED, camera_names=()) as env:
        angles = []
        result = env.task.expert(env, lid_slip_prob=lid_slip_prob).run(
            on_step=lambda step, action: angles.append(lid_angle(env.world)))
        bar = env.world.model.geom("lid_bar").id
        contact = (int(env.world.model.geom_contype[bar]), int(env.world.model.geom_conaffinity[bar]))
    return result.success, np.array(angles), contact


def test_rice_cooker_expert_reopens_a_lid_whose_bar_slipped_mid_pull():
    """A slip demo: the lid, pulled past SLIP_ANGLES' low end, falls shut with the cup still out, and the
    expert opens it again and finishes; the plain demo's lid never falls; the bar collides again after."""
    from robot_client.tasks.rice_cooker import FELL_SHUT_ANGLE, SLIP_ANGLES

    plain_ok, plain, plain_contact = _lid_angles(0.0)
    slip_ok, slip, slip_contact = _lid_angles(1.0)
    assert plain_ok and slip_ok
    assert plain_contact == slip_contact == (1, 3)

    def falls(angles):  # ticks where a lid once past the low end of SLIP_ANGLES is shut again
        return np.flatnonzero((angles < FELL_SHUT_ANGLE) & (np.maximum.accumulate(angles) > SLIP_ANGLES[0]))

    fell = falls(slip)
    assert fell.size and slip[:fell[0]].max() < 1.25  # it fell from mid-pull, not from the open stop
    assert slip[fell[0]:].max() > 1.6  # reopened to the stop
    assert falls(plain).size == 0 or plain[:falls(plain)[0]].max() > 1.6  # plain: shut only by the final close
    with SimEnv("rice_cooker", seed=0, camera_names=()) as env, pytest.raises(ValueError, match="lid_slip_prob"):
        env.task.expert(env, lid_slip_prob=1.5)


def _off_course_calls(**expert_options) -> list[str]:
    """What `RiceCookerTask.off_course` says during an expert demo (seed 0), tick by tick."""
    with SimEnv("rice_cooker", seed=0, camera_names=()) as env:
        calls = []
        env.task.expert(env, **expert_options).run(on_step=lambda *_: calls.append(env.task.off_course(env)))
    return [c for c in calls if c]


def test_rice_cooker_off_course_flags_a_missed_grasp_and_not_the_expert():
    """The expert-takeover watchdog: silent over a whole plain demo (lid bar grasps included), and it
    flags a first grasp aimed 2.5-4 cm off before the fingers close on nothing."""
    assert _off_course_calls() == []
    missed = _off_course_calls(practice_miss_prob=1.0)
    assert missed and "off the cup" in missed[0]


def _expert_until(env, condition) -> None:
    """Step the plain expert, tick by tick, until `condition(env)`."""
    expert, dt = env.task.expert(env), 1.0 / env.task.control_hz
    while not condition(env):
        expert.step()
        env.clock.sleep(dt)


def _set_lid(world, angle: float) -> None:
    """Put the lid at `angle`, at rest (what a policy left, or a bar that left the fingers)."""
    import mujoco

    with world.lock:
        world.data.qpos[world.model.joint("lid_hinge").qposadr[0]] = angle
        world.data.qvel[world.model.joint("lid_hinge").dofadr[0]] = 0.0
        mujoco.mj_forward(world.model, world.data)


def _take_over_when(condition, before=None):
    """The plain expert (seed 1) until `condition(env)` (then `before(env)`, what a policy did), then an
    expert resuming from that scene, as `--takeover expert` does: what it found held, and per tick (lid
    angle, width, cup in the pot)."""
    from robot_client.tasks.rice_cooker import cup_in_cavity, held_object, lid_angle

    with SimEnv("rice_cooker", seed=1, camera_names=()) as env:
        assert held_object(env) is None
        _expert_until(env, condition)
        if before is not None:
            before(env)
        held, ticks = held_object(env), []
        record = lambda *_: ticks.append((lid_angle(env.world), env.gripper.get_state().width, cup_in_cavity(env.world)))  # noqa: E731
        result = env.task.expert(env, resume=True).run(on_step=record)
    return held, np.array(ticks, dtype=float), result.success


@pytest.mark.parametrize("height", [0.16, 0.10])
def test_a_taking_over_expert_goes_down_onto_the_cup_from_a_hand_above_it(height):
    """Taking over from a hand above the cup (hovering 16 cm above it, or on its way down at 10 cm): no
    climb to the clear height and the approach height first (labels a policy copies as "rise", then
    sinks again, in a loop above the cup); it goes down, grasps the cup and puts it in the pot."""
    from robot_client.tasks.rice_cooker import OPEN_HAND_WIDTH, cup_in_cavity, cup_position, hand_over_cup, tcp_position

    with SimEnv("rice_cooker", seed=1, camera_names=()) as env:
        _expert_until(env, lambda e: (tcp_position(e.world) - cup_position(e.world))[2] < height
                      and np.linalg.norm((tcp_position(e.world) - cup_position(e.world))[:2]) < 0.03)
        assert hand_over_cup(env.world)
        start, heights, widths, in_pot = tcp_position(env.world)[2], [], [], []
        record = lambda *_: (heights.append(tcp_position(env.world)[2]), widths.append(env.gripper.get_state().width),  # noqa: E731
                             in_pot.append(cup_in_cavity(env.world)))
        env.task.expert(env, resume=True).run(on_step=record)
    grasped = int(np.argmax(np.array(widths) < OPEN_HAND_WIDTH))  # the fingers closing on the cup
    # The cup stage is this test's subject; the lid close after it is at the arm's reach limit, where
    # the expert fails a few seeds (docs/results.md) and this one on some hosts' floating point.
    assert grasped > 0 and any(in_pot)
    assert max(heights[:grasped]) < start + 0.005


def test_a_taking_over_expert_keeps_the_grip_on_the_lid_bar_and_pulls_on():
    """Mid-pull (lid at 0.4 rad): letting go would label the policy's slow pull with "release"."""
    from robot_client.tasks.rice_cooker import HOLDING_WIDTH, OPEN_ANGLE, lid_angle

    held, ticks, success = _take_over_when(lambda env: lid_angle(env.world) > 0.4)
    assert held == "bar" and success
    pulling = ticks[: int(np.argmax(ticks[:, 0] > OPEN_ANGLE))]
    assert len(pulling) > 0 and pulling[:, 1].max() < HOLDING_WIDTH


def test_a_taking_over_expert_pulls_on_a_lid_left_part_way_open():
    """Past the "lid opened" angle but let go of short of vertical, hinge friction holds the lid where it
    is: the expert grasps the bar there and pulls on (at the shut lid's bar it would close on air)."""
    from robot_client.tasks.rice_cooker import PULL_TO, lid_angle

    def let_go(env):
        env.gripper.goto(0.08, 0.1, 10.0, blocking=False)
        env.clock.sleep(1.0)

    held, ticks, success = _take_over_when(lambda env: lid_angle(env.world) > 1.35, before=let_go)
    assert held is None and success
    on_stop = int(np.argmax(ticks[:, 0] > PULL_TO - 0.02))
    assert ticks[0, 0] < 1.4 and on_stop > 0 and ticks[:on_stop, 0].min() > 1.2  # pulled on, never shut first


def test_a_taking_over_expert_closes_a_lid_part_way_down_after_the_cup_from_where_it_is():
    """The cup is in, the open hand above the pot and the lid part way down, as a policy's close leaves it:
    the expert closes the lid from there. Opening it again first, as a lid part way before the cup needs,
    would label the policy's close with "open"."""
    from robot_client.tasks.rice_cooker import OPEN_HAND_WIDTH, cooker_position, cup_in_cavity, tcp_position

    def lid_part_way(env):
        _set_lid(env.world, 1.35)

    def let_go_above_the_pot(env):
        return (cup_in_cavity(env.world) and env.gripper.get_state().width > OPEN_HAND_WIDTH
                and (tcp_position(env.world) - cooker_position(env.world))[2] > 0.2)

    held, ticks, success = _take_over_when(let_go_above_the_pot, before=lid_part_way)
    assert success and ticks[:, 2].all()  # closed with the cup left in the pot
    # Never back on its stop (1.7), where opening it again ends; the open hand set beside the lid nudges it
    # up a little as it rises.
    assert ticks[0, 0] == pytest.approx(1.35, abs=0.02) and ticks[:, 0].max() < 1.6


def test_a_taking_over_expert_pulls_the_bar_where_the_fingers_hold_it():
    """A policy grasps the bar off its centre (1.1 cm along it in seed 700029, whose takeover stalled):
    the expert pulls it along the arc from where it is held, as fast as from a centred grasp, instead of
    sliding it through the fingers toward their centre (about 95 ticks to 1.6 rad that way, 27 this way)."""
    import mujoco

    from robot_client.tasks.base import set_body_pos
    from robot_client.tasks.rice_cooker import bar_position, cooker_position, lid_angle, tcp_position

    def hold_it_off_centre(env):  # the cooker (and the bar) moved 1.1 cm along the bar under the fingers
        world = env.world
        with world.lock:
            set_body_pos(world, "cooker", cooker_position(world) + np.array([0.0, -0.011, 0.0]))
            mujoco.mj_forward(world.model, world.data)
        offset = tcp_position(world) - bar_position(cooker_position(world), lid_angle(world))
        assert offset[1] == pytest.approx(0.011, abs=0.002)

    held, ticks, success = _take_over_when(lambda env: lid_angle(env.world) > 0.4, hold_it_off_centre)
    assert held == "bar" and success
    assert np.argmax(ticks[:, 0] > 1.6) < 40


def test_an_expert_move_is_abandoned_the_tick_its_check_says_so_and_the_arm_stays_there():
    """`Move.abandon_if` is asked every tick; once it says so the move ends where the arm is, and the next
    segment holds that pose instead of pulling on toward the abandoned target (a bar that left the fingers
    would otherwise have the empty hand pressed against the lid until the move timed out)."""
    import itertools

    from robot_client.tasks.expert import Hold, Move, ScriptedExpert, topdown
    from robot_client.tasks.rice_cooker import tcp_position

    with SimEnv("rice_cooker", seed=1, camera_names=()) as env:
        asked = itertools.count()
        start = tcp_position(env.world).copy()
        plan = iter([Move(start + np.array([0.0, 0.0, -0.2]), topdown(0.0), speed=0.2,
                          abandon_if=lambda: next(asked) >= 6), Hold(1.0)])
        expert, dt = ScriptedExpert(env, plan), 1.0 / env.task.control_hz
        ticks = 0
        while not isinstance(expert.segment, Hold):
            expert.step()
            env.clock.sleep(dt)
            ticks += 1
        assert ticks == 7  # six ticks of the move; on the seventh the check says so
        left_at = tcp_position(env.world).copy()
        assert start[2] - left_at[2] > 0.03  # it had moved down
        for _ in range(10):
            expert.step()
            env.clock.sleep(dt)
        # and stays (about 7 mm of settling), where carrying on would have gone down another 10 cm
        assert np.linalg.norm(tcp_position(env.world) - left_at) < 0.015


def _expert_with_lid_set(when, angle):
    """The plain expert (seed 1); the first tick `when(env, lid)` holds, the lid is set to `angle` (a bar
    that left the fingers, a lid that fell back): per tick (lid angle, cup in the pot), and success."""
    from robot_client.tasks.rice_cooker import cup_in_cavity, lid_angle

    with SimEnv("rice_cooker", seed=1, camera_names=()) as env:
        world, ticks, done = env.world, [], []

        def on_step(*_):
            lid = lid_angle(world)
            if not done and when(env, lid):
                _set_lid(world, angle)
                done.append(len(ticks))
            ticks.append((lid_angle(world), cup_in_cavity(world)))

        result = env.task.expert(env).run(on_step=on_step)
    assert done, "the lid was never set"
    return np.array(ticks, dtype=float), done[0], result.success


def _opened_again_before_the_cup(ticks, set_at):
    after = ticks[set_at + 1:]
    cup_in = int(np.argmax(after[:, 1] > 0)) if after[:, 1].any() else len(after)
    return after[:cup_in, 0].max() > 1.6


def test_the_expert_grasps_the_bar_again_when_it_leaves_the_fingers_mid_pull():
    """A takeover from a hand rolled about the bar once lost it mid-pull: the expert went on pulling at
    nothing, let go, and put the cup onto the closed lid (5 of 10 such takeovers, docs/results.md session
    37). Here the lid drops shut out of the fingers at 0.8 rad: the expert grasps the bar again, pulls it
    to the stop, and only then puts the cup in."""
    ticks, set_at, success = _expert_with_lid_set(lambda env, lid: lid > 0.8, 0.0)
    assert ticks[set_at + 1, 0] < 0.2
    assert _opened_again_before_the_cup(ticks, set_at) and success


def test_the_expert_pulls_again_a_lid_that_ended_short_of_the_stop():
    """A lid let go of short of its stop creeps shut while the cup is carried (from about 1.4 rad down):
    set back to 1.35 as the hand lets go at the stop, it is grasped and pulled to the stop again."""
    from robot_client.tasks.rice_cooker import OPEN_HAND_WIDTH

    def letting_go_at_the_stop(env, lid):
        return lid > 1.6 and 0.04 < env.gripper.get_state().width < OPEN_HAND_WIDTH

    ticks, set_at, success = _expert_with_lid_set(letting_go_at_the_stop, 1.35)
    assert _opened_again_before_the_cup(ticks, set_at) and success


def test_rice_cooker_off_course_ignores_the_open_hand_over_the_cup_in_the_pot():
    """A policy's release over the pot is a little off centre: that is the cup going in, not a grasp
    going wrong, so the watchdog stays silent."""
    from robot_client.tasks.rice_cooker import OPEN_HAND_WIDTH, cup_in_cavity, cup_position

    with SimEnv("rice_cooker", seed=1, camera_names=()) as env:
        _expert_until(env, lambda env: cup_in_cavity(env.world) and env.gripper.get_state().width > OPEN_HAND_WIDTH)
        tcp = env.world.data.site_xpos[env.world.model.site("tcp").id]
        tcp[:] = cup_position(env.world) + np.array([0.02, 0.0, 0.03])  # 2 cm off centre, just above the cup
        assert env.task.off_course(env) is None


def test_the_watchdog_flags_an_open_hand_rising_over_the_cup_and_not_one_settling_there():
    """The hover (docs/results.md session 53): over the cup the policy plans "up, then down" and runs only the
    "up". The watchdog calls a rise of HOVER_RISE from the lowest the open hand got there, not a centimetre's
    settling, and the expert taking over from the risen hand goes down, grasps the cup and puts it in."""
    from robot_client.ik import DLSInverseKinematics
    from robot_client.tasks.rice_cooker import HOVER_RISE, cup_position, hand_over_cup, tcp_position

    def over_the_cup(env):
        rel = tcp_position(env.world) - cup_position(env.world)
        return hand_over_cup(env.world) and rel[2] < 0.11 and np.linalg.norm(rel[:2]) < 0.01

    def rise(env, metres, ticks=8):
        ik, calls = DLSInverseKinematics(), []
        pos, quat = env.robot.get_ee_pose()
        for i in range(1, ticks + 1):
            target = pos.numpy() + np.array([0.0, 0.0, metres * i / ticks])
            q = ik.solve(target, quat.numpy(), env.robot.get_joint_positions().numpy(), max_iterations=20).q
            env.robot.update_desired_joint_positions(q)
            env.clock.sleep(1.0 / env.task.control_hz)
            calls.append(env.task.off_course(env))
        return calls

    def settle_then_rise(env):
        assert env.task.off_course(env) is None
        assert rise(env, 0.01) == [None] * 8  # an arrival's settling
        calls = rise(env, HOVER_RISE + 0.02)
        assert calls[0] is None and "rose" in calls[-1] and "over the cup" in calls[-1]

    held, ticks, success = _take_over_when(over_the_cup, settle_then_rise)
    assert held is None and ticks[:, 2].any()  # the expert took the cup into the pot from there


def test_a_taking_over_expert_carries_a_held_cup_on_into_the_pot():
    from robot_client.tasks.rice_cooker import HOLDING_WIDTH, cup_position

    held, ticks, success = _take_over_when(lambda env: cup_position(env.world)[2] > 0.1)
    assert held == "cup" and success
    carrying = ticks[: int(np.argmax(ticks[:, 2]))]
    assert len(carrying) > 0 and carrying[:, 1].min() > HOLDING_WIDTH


def test_rice_cooker_expert_closes_on_the_bar_at_rest_and_pulls_it_at_an_even_pace():
    """A policy copies the demo's labels, not its intent: the fingers close with the hand already at the
    bar and still (no upward correction to copy, which lifts a hand that arrived high off the bar), and
    the pull runs at one speed and a smoothly turning direction up to the open angle (no slowing at each
    waypoint, copied as pauses; no jerk where one waypoint hands over to the next)."""
    from robot_client.tasks.rice_cooker import (BAR_WIDTH, OPEN_ANGLE, bar_position, cooker_position, lid_angle,
                                                tcp_position)

    rows, velocity = [], []  # per tick: tcp height above the bar's centre, commanded speed, gripper command, width, lid
    with SimEnv("rice_cooker", seed=0, camera_names=()) as env:
        bar = bar_position(cooker_position(env.world), 0.0)

        def on_step(step, action):
            velocity.append(action.cartesian_velocity[:3])
            rows.append((tcp_position(env.world)[2] - bar[2], np.linalg.norm(action.cartesian_velocity[:3]),
                         action.gripper_position, env.gripper.get_state().width, lid_angle(env.world)))

        env.task.expert(env).run(on_step=on_step, max_duration_s=10.0)
    rows = np.array(rows)
    closing = np.flatnonzero(rows[:, 2] == 1.0)
    closing = closing[: int(np.argmax(rows[closing, 3] < BAR_WIDTH + 0.001))]
    assert len(closing) >= 3
    assert np.abs(rows[closing, 0]).max() < 0.003 and rows[closing, 1].max() < 0.05
    pull_start = closing[-1] + int(np.argmax(rows[closing[-1]:, 1] > 0.3))
    pull_end = pull_start + int(np.argmax(rows[pull_start:, 4] > OPEN_ANGLE))
    assert pull_end - pull_start > 5 and rows[pull_start:pull_end, 1].min() > 0.3
    v = np.array(velocity[pull_start:pull_end])
    turn = (v[1:] * v[:-1]).sum(axis=1) / (np.linalg.norm(v[1:], axis=1) * np.linalg.norm(v[:-1], axis=1))
    assert turn.min() > np.cos(np.radians(30))


def test_the_watchdog_flags_a_hand_rolled_about_the_bar_mid_pull_and_the_expert_pulls_on_to_the_stop():
    """The lid's pull turns a compliant wrist about the bar; a policy that does not turn back loses the
    bar near 1.3 rad and the lid falls shut. The watchdog calls that roll, not the expert's own pull
    (the plain demo test above), and the expert taking over keeps the grip and pulls the lid to the stop."""
    from robot_client.action_path import apply_rotation_vector
    from robot_client.ik import DLSInverseKinematics
    from robot_client.tasks.rice_cooker import BAR_ROLL_LIMIT, LID_STOP, hand_roll_about_bar, lid_angle

    def roll_the_hand(env):  # what a drifting policy does: 1 deg a tick about the bar (+y), 12 ticks
        ik = DLSInverseKinematics()
        assert env.task.off_course(env) is None
        for _ in range(12):
            pos, quat = env.robot.get_ee_pose()
            target = apply_rotation_vector(quat.numpy(), np.array([0.0, np.radians(1.0), 0.0]))
            q = ik.solve(pos.numpy(), target, env.robot.get_joint_positions().numpy(), max_iterations=20).q
            env.robot.update_desired_joint_positions(q)
            env.clock.sleep(1.0 / env.task.control_hz)
        assert hand_roll_about_bar(env) > BAR_ROLL_LIMIT
        assert "rolled" in env.task.off_course(env)

    held, ticks, success = _take_over_when(lambda env: lid_angle(env.world) > 0.4, roll_the_hand)
    assert held == "bar" and success
    assert ticks[:, 0].max() > LID_STOP - 0.05


def test_the_watchdog_flags_a_lid_that_fell_shut_before_the_cup_and_the_expert_opens_it_again():
    """A quarter of the committed policy's trials: the lid, opened once, is shut again while the cup is still
    on the table (docs/results.md session 40). The watchdog calls it off course (the plain demo, whose
    lid shuts only over the cup in the pot, never is: the first test above), and the expert taking over
    opens the lid again before it carries the cup."""
    from robot_client.tasks.rice_cooker import (OPEN_HAND_WIDTH, PULL_TO, bar_position, cooker_position, lid_angle,
                                                tcp_position)

    def on_the_way_to_the_cup(env):
        away = np.linalg.norm(tcp_position(env.world) - bar_position(cooker_position(env.world), lid_angle(env.world)))
        return lid_angle(env.world) > 1.6 and env.gripper.get_state().width > OPEN_HAND_WIDTH and away > 0.12

    def knock_it_shut(env):
        env.check_success()  # what the control loop does every tick
        assert env.success.stage == 1 and env.task.off_course(env) is None
        _set_lid(env.world, 0.0)
        env.clock.sleep(0.2)
        assert "lid fell shut" in env.task.off_course(env)

    held, ticks, success = _take_over_when(on_the_way_to_the_cup, knock_it_shut)
    assert held is None and success
    reopened = int(np.argmax(ticks[:, 0] > PULL_TO - 0.05))
    assert reopened > 0 and not ticks[:reopened, 2].any()  # on its stop again before the cup went in
    # Straight for the bar, as a demo starts: no detour to the clear height turned to the cup grip first
    # (grasped after 49 ticks that way, 38 this way), whose labels made a finetuned policy hover (session 41).
    assert 0 < int(np.argmax(ticks[:, 1] < 0.03)) < 44


def test_a_cup_pushed_off_the_table_lands_on_the_floor():
    """The floor is drawn for the cameras and also catches what falls off the table (it fell forever)."""
    import mujoco

    from robot_client.tasks.base import set_free_body_pose
    from robot_client.tasks.rice_cooker import cup_position

    with SimEnv("rice_cooker", seed=0, camera_names=()) as env:
        world = env.world
        set_free_body_pose(world, "cup", (1.2, 0.0, 0.3))  # beyond the table's far edge (x = 1.05)
        mujoco.mj_forward(world.model, world.data)
        world.step_to(world.data.time + 2.0)
        floor_z = world.model.geom("floor").pos[2]
        assert cup_position(world)[2] == pytest.approx(floor_z, abs=0.06)
