"""The control loop on the sim: asynchronous chunks, holds, e-stop latch, controller watchdog."""

import threading

import numpy as np
import pytest

from robot_client.action_path import CartesianVelocityActionPath
from robot_client.control_loop import ControlLoop, LoopConfig
from robot_client.policy import PolicyReply
from robot_client.safety import EStop, SafetyMonitor
from robot_client.sim.env import SimEnv
from robot_client.watchdog import ControllerWatchdog


class ScriptedPolicy:
    """Returns a fixed chunk (or raises); counts calls. Stands in for the server in loop tests."""

    def __init__(self, action=None, fail=False):
        self.action = np.array([0.3, 0, 0, 0, 0, 0, 0.0]) if action is None else np.asarray(action, float)
        self.fail = fail
        self.calls = 0
        self.states = []
        self.seeds = []

    def hello(self):
        return {}

    def infer(self, obs, seed=None):
        self.calls += 1
        self.states.append(obs.state)
        self.seeds.append(seed)
        assert all(v.shape == (2, 90, 160, 3) and v.dtype == np.uint8 for v in obs.images.values())
        if self.fail:
            raise RuntimeError("server unreachable")
        return PolicyReply(np.tile(self.action, (16, 1)))


@pytest.fixture
def env():
    e = SimEnv("rice_cooker", condition="ID", seed=0)
    yield e
    e.close()


def make_loop(env, policy, **cfg):
    shapes = {k: (90, 160) for k in env.cameras}
    config = LoopConfig(**{"max_steps": 30, "sim_latency_s": 0.2, **cfg})
    return ControlLoop(env.robot, env.gripper, env.cameras, env.clock, policy,
                       CartesianVelocityActionPath(SafetyMonitor()), config, shapes)


def test_loop_executes_chunks_asynchronously_and_never_idles(env):
    policy = ScriptedPolicy()
    start = np.asarray(env.robot.get_ee_pose()[0])
    result = make_loop(env, policy, max_steps=40).run()
    moved = np.asarray(env.robot.get_ee_pose()[0]) - start
    assert result.reason == "timeout" and result.steps == 40
    assert moved[0] > 0.15  # +x commanded at 0.3 * 0.075 m per tick
    s = result.stats
    assert s["idle_s"] == 0.0 and s["chunks"] >= 4 and policy.calls >= 4
    assert s["dropped_actions"] >= 3 * (s["chunks"] - 1)  # 0.2 s latency = 3 stale actions per chunk
    assert env.robot.is_running_policy()  # ends holding under the controller


def test_each_request_carries_the_robot_state_of_its_frames(env):
    q0, ee0 = np.asarray(env.robot.get_joint_positions()), np.asarray(env.robot.get_ee_pose()[0])
    policy = ScriptedPolicy()
    make_loop(env, policy, max_steps=20).run()
    first, last = policy.states[0], policy.states[-1]
    assert {k: v.shape for k, v in first.items()} == {"q": (2, 7), "ee_pos": (2, 3), "ee_quat": (2, 4), "gripper_width": (2, 1)}
    # The first request repeats tick 0 (as its frames do); later ones see the arm move in +x.
    np.testing.assert_allclose(first["q"], [q0, q0], atol=1e-6)
    np.testing.assert_allclose(first["ee_pos"], [ee0, ee0], atol=1e-6)
    assert last["ee_pos"][1, 0] > last["ee_pos"][0, 0] > ee0[0] + 0.01


@pytest.mark.parametrize("k, executed", [(4, [3, 4, 5]), (5, [3, 4, 5, 6])])
def test_each_chunk_runs_the_actions_execute_k_allows(env, k, executed):
    """A 0.2 s lockstep latency is 3 ticks (float clock time makes it 3.0000000000000027): a chunk
    starts at its action 3 and runs until the next, asked one margin tick before k runs out, takes over."""
    loop = make_loop(env, ScriptedPolicy(), max_steps=60, execute_k=k)
    indices = []
    loop.on_step = lambda rec, frames: indices.append(rec.action_index)
    loop.run()
    runs = np.split(np.array(indices[3:]), np.flatnonzero(np.diff(indices[3:]) < 0) + 1)
    assert indices[:3] == [-1, -1, -1] and all(r.tolist() == executed for r in runs[:-1]) and len(runs) > 8


def test_request_i_draws_noise_from_seed_plus_i(env):
    policy = ScriptedPolicy()
    make_loop(env, policy, seed=7).run()
    assert len(policy.seeds) >= 4 and policy.seeds == list(range(7, 7 + len(policy.seeds)))


class StuckUntilHeatedPolicy(ScriptedPolicy):
    """Asks for no motion until a request comes at a raised noise scale, then for +x motion: a policy that
    a higher sampling temperature gets unstuck."""

    def __init__(self):
        super().__init__(action=np.zeros(7))
        self.noise_scales = []

    def infer(self, obs, seed=None, noise_scale=None):
        self.noise_scales.append(noise_scale)
        if noise_scale is not None:
            self.action = np.array([0.3, 0, 0, 0, 0, 0, 0.0])
        return super().infer(obs, seed)


def test_a_stalled_hand_asks_for_its_next_chunk_at_the_stall_noise_scale(env):
    policy = StuckUntilHeatedPolicy()
    loop = make_loop(env, policy, max_steps=90, execute_k=4, stall_noise_scale=1.0, stall_window_s=3.0)
    asked_at = []
    loop.on_chunk = lambda chunk: asked_at.append((chunk.t_obs, chunk.meta["noise_scale"]))
    start = np.asarray(env.robot.get_ee_pose()[0])
    result = loop.run()
    heated = [i for i, s in enumerate(policy.noise_scales) if s is not None]
    # The requests from 3 s of a still hand on are heated until the hand has moved off (the one asked while
    # the first heated chunk was in flight too); then the server's scale again.
    assert heated and heated == list(range(heated[0], heated[-1] + 1)) and len(heated) <= 2
    assert {policy.noise_scales[i] for i in heated} == {1.0} and result.stats["stalled_requests"] == len(heated)
    assert heated[-1] < len(policy.noise_scales) - 5
    t_heated = [t for t, s in asked_at if s is not None]
    assert t_heated and 3.0 - 1e-6 <= t_heated[0] < 3.0 + 4 / 15 + 1e-6
    assert all(t < 3.0 for t, s in asked_at if s is None and t < t_heated[0])
    assert np.asarray(env.robot.get_ee_pose()[0])[0] - start[0] > 0.1  # unstuck: it moved off in +x


def test_without_a_stall_noise_scale_a_still_hand_keeps_the_servers_scale(env):
    policy = StuckUntilHeatedPolicy()
    result = make_loop(env, policy, max_steps=70, execute_k=4).run()
    assert len(policy.noise_scales) > 10 and set(policy.noise_scales) == {None}
    assert result.stats["stalled_requests"] == 0


def test_a_stalled_hand_commits_to_longer_chunks_with_stall_execute_k(env):
    """A policy that keeps planning "wait, then move" never gets to the move at a short horizon; once the
    hand has been still for the stall window, each chunk runs stall_execute_k actions (its temperature
    untouched when stall_noise_scale is off)."""
    policy = StuckUntilHeatedPolicy()
    loop = make_loop(env, policy, max_steps=120, execute_k=4, stall_execute_k=12, stall_window_s=3.0)
    ticks = []
    loop.on_step = lambda rec, frames: ticks.append((rec.t, rec.action_index))
    result = loop.run()
    indices = np.array([i for _, i in ticks[3:]])
    starts = np.flatnonzero(np.diff(indices) < 0) + 1
    runs = [(ticks[3 + a][0], len(r)) for a, r in zip([0, *starts], np.split(indices, starts))]
    assert [n for t, n in runs if t < 3.0] and {n for t, n in runs if t < 3.0} == {3}  # k = 4 before the stall
    # From the first chunk asked after 3 s still on, 11 actions a chunk (12, less the tick its successor is
    # asked early); the hand never moves, so it stays stalled.
    assert {n for t, n in runs[:-1] if t > 3.0 + 8 / 15} == {11}
    assert set(policy.noise_scales) == {None} and result.stats["stalled_requests"] >= 4


def test_nan_chunks_hold_the_arm(env):
    q0 = np.asarray(env.robot.get_joint_positions())
    result = make_loop(env, ScriptedPolicy(action=[np.nan] * 7)).run()
    assert result.stats["hold_ticks"] > 10
    assert np.abs(np.asarray(env.robot.get_joint_positions()) - q0).max() < 0.01


def test_failing_policy_is_reported_and_the_arm_holds(env):
    q0 = np.asarray(env.robot.get_joint_positions())
    result = make_loop(env, ScriptedPolicy(fail=True)).run()
    assert any("server unreachable" in e for e in result.stats["errors"])
    assert np.abs(np.asarray(env.robot.get_joint_positions()) - q0).max() < 0.01


def test_estop_terminates_and_never_resumes(env):
    estop = EStop()
    loop = make_loop(env, ScriptedPolicy(), max_steps=200)
    loop.estop = estop
    original = loop.action_path

    def path_then_trip(*args):
        if loop.stats.chunks >= 1:
            estop.trip("operator pressed e-stop")
        return original(*args)

    loop.action_path = path_then_trip
    result = loop.run()
    assert result.reason == "estop" and result.steps < 200
    assert not env.robot.is_running_policy()  # controller terminated: the robot holds by itself
    q_after = np.asarray(env.robot.get_joint_positions())
    again = loop.run()  # a new run refuses to move while the latch is set
    assert again.reason == "estop" and again.steps == 0
    env.clock.sleep(0.5)
    assert np.abs(np.asarray(env.robot.get_joint_positions()) - q_after).max() < 0.02


def test_watchdog_restarts_a_controller_the_sim_killed(env):
    dog = ControllerWatchdog(env.robot)
    dog.start()
    q = np.asarray(env.robot.get_joint_positions())
    dog.send(q)
    env.robot.kill_controller()
    assert not env.robot.is_running_policy()
    dog.send(q)  # notices, restarts, and the update goes through
    assert env.robot.is_running_policy() and len(dog.events) == 1
    assert "not running" in dog.events[0].reason


def test_operator_takeover_replaces_the_policy_and_tags_the_steps(env):
    from robot_client.teleop import Takeover, TeleopDevice

    operator_action = np.array([0.0, 0.4, 0, 0, 0, 0, 0.0])

    class Stick(TeleopDevice):
        name = "stick"

        def action(self):
            return operator_action.copy()

    takeover = Takeover(Stick())
    records = []

    def on_step(record, frames):
        records.append(record)
        if len(records) in (10, 20):  # the operator grabs the arm after tick 9 and lets go after tick 19
            takeover.toggle()

    policy = ScriptedPolicy()
    loop = make_loop(env, policy, max_steps=40)
    loop.takeover, loop.on_step = takeover, on_step
    result = loop.run()
    tagged = [r.intervention for r in records]
    assert tagged == [False] * 10 + [True] * 10 + [False] * 20
    y = np.array([r.ee_pos[1] for r in records])
    assert y[20] - y[10] > 0.15  # +y at 0.4 * 0.075 m per tick while the operator drove
    for r in records[10:20]:
        np.testing.assert_allclose(r.action, operator_action)
        assert r.chunk_id == -1
    # On release the policy's old plan is gone: it asks afresh and drives +x again.
    assert any(r.chunk_id >= 0 for r in records[20:]) and records[-1].action[0] == pytest.approx(0.3)
    assert result.stats["intervention_ticks"] == 10


def run_still_policy_with_takeover(env, takeover, max_steps):
    """A policy that holds still under `takeover` until success or `max_steps`: (result, records, the
    task's stage after each step)."""
    takeover.start_trial(env)
    records, stages = [], []
    loop = make_loop(env, ScriptedPolicy(action=np.zeros(7)), max_steps=max_steps)
    loop.takeover, loop.success_check = takeover, env.check_success

    def on_step(record, frames):
        records.append(record)
        stages.append(env.success.stage)

    loop.on_step = on_step
    return loop.run(), records, stages


def test_expert_takeover_finishes_a_stalled_trial_and_tags_its_steps(env):
    """Sim DAgger: the policy holds still, so after `stall_s` with no progress the scripted expert takes
    the arm, plans from the scene as it is, and completes the task; only its steps are tagged."""
    from robot_client.teleop import ExpertTakeover

    takeover = ExpertTakeover(stall_s=1.0)
    result, records, _ = run_still_policy_with_takeover(env, takeover, max_steps=900)
    tagged = np.array([r.intervention for r in records])
    first = int(np.argmax(tagged))
    assert result.success and result.reason == "success"
    assert "no progress for 1 s (next: lid opened)" in takeover.reason
    assert 14 <= first <= 17 and tagged[first:].all()  # 1 s at 15 Hz, then the expert to the end
    assert all(r.chunk_id >= 0 for r in records[3:first])  # the policy drove until then
    with pytest.raises(ValueError, match="--robot sim"):
        ExpertTakeover().start_trial(None)


def test_expert_takeover_stall_only_ignores_the_task_calling_the_policy_off_course(env, monkeypatch):
    """The task's off-course rule fires every tick here; by default the expert takes the arm at once,
    with `off_course=False` only the stall (1 s of no progress) hands it over."""
    from robot_client.teleop import ExpertTakeover

    monkeypatch.setattr(env.task, "off_course", lambda env: "hand 3.0 cm off the cup at 0.02 m above it")
    taken_at = {}
    for off_course in (True, False):
        takeover = ExpertTakeover(stall_s=1.0, off_course=off_course)
        takeover.start_trial(env)
        ticks = 0
        while takeover.action() is None:
            env.clock.sleep(1 / 15)  # the sim advances; the policy commands nothing
            ticks += 1
        taken_at[off_course] = (ticks, takeover.reason)
    assert taken_at[True] == (0, "hand 3.0 cm off the cup at 0.02 m above it")
    assert 14 <= taken_at[False][0] <= 17 and taken_at[False][1].startswith("no progress for 1 s")


def test_expert_takeover_off_course_only_counts_the_calls_it_names(env, monkeypatch):
    """`off_course_only`: a round aimed at one kind of mistake. The task calls the hand off the cup for 5
    ticks, then the lid shut: only the second takes the arm."""
    from robot_client.teleop import ExpertTakeover

    calls = iter(["hand 3.0 cm off the cup at 0.02 m above it"] * 5 + ["lid fell shut (0.00 rad) before the cup was in"] * 5)
    monkeypatch.setattr(env.task, "off_course", lambda env: next(calls))
    takeover = ExpertTakeover(stall_s=10.0, off_course_only="lid fell shut")
    takeover.start_trial(env)
    ticks = 0
    while takeover.action() is None:
        env.clock.sleep(1 / 15)
        ticks += 1
    assert ticks == 5 and takeover.reason.startswith("lid fell shut")
    with pytest.raises(ValueError, match="off_course=True"):
        ExpertTakeover(off_course=False, off_course_only="lid fell shut")


def test_an_expert_lead_sets_the_scene_untagged_then_the_policy_drives_until_it_stalls(env):
    """`lead_until`: the expert drives from the start until the lid is open (steps untagged: scene setting,
    not labels), then the policy has the arm; when it stalls, the expert takes over as usual (tagged)."""
    from robot_client.runner import expert_takeover_meta
    from robot_client.teleop import ExpertTakeover

    takeover = ExpertTakeover(stall_s=1.0, lead_until="lid opened")
    _, records, stages = run_still_policy_with_takeover(env, takeover, max_steps=400)
    handed = stages.index(1)  # the tick the lid counted as opened
    assert not any(r.intervention for r in records[:handed + 1])
    assert all(r.chunk_id == -1 for r in records[:handed])  # the expert, not the policy's chunks, drove
    assert np.abs(np.array([r.action[:3] for r in records[:handed]])).max() > 0.1
    assert takeover.lead == {"until": "lid opened", "handed_over_t": pytest.approx(records[handed].t)}
    tagged = np.array([r.intervention for r in records])
    first = int(np.argmax(tagged))
    assert 14 <= first - handed <= 17 and takeover.reason == "no progress for 1 s (next: cup in the pot)"
    assert all(r.chunk_id >= 0 for r in records[handed + 3:first])  # the policy had the arm in between
    meta = expert_takeover_meta(takeover)
    assert meta["expert_lead"]["until"] == "lid opened" and meta["expert_takeover"]["t"] == pytest.approx(records[first].t)
    with pytest.raises(ValueError, match=r"one of task 'rice_cooker'\'s stages \['lid opened'"):
        ExpertTakeover(lead_until="lid shut").start_trial(env)


def test_expert_takeover_with_hand_back_returns_the_arm_after_each_stage(env):
    """`hand_back`: the expert keeps the arm only until the stage it took over for is reached; the
    policy then drives the next stage (untagged, from the policy's own chunks) until it stalls again."""
    from robot_client.teleop import ExpertTakeover

    takeover = ExpertTakeover(stall_s=1.0, hand_back=True)
    result, records, stages = run_still_policy_with_takeover(env, takeover, max_steps=1400)
    assert result.success
    takeovers = takeover.takeovers
    reasons = [t["reason"] for t in takeovers]
    assert reasons == [f"no progress for 1 s (next: {stage})" for stage in env.success.stages]
    assert takeover.reason == reasons[0]  # the first one, as meta.json's expert_takeover records it
    tagged = np.array([r.intervention for r in records])
    starts = np.flatnonzero(tagged[1:] & ~tagged[:-1]) + 1
    ends = np.flatnonzero(~tagged[1:] & tagged[:-1]) + 1
    assert len(starts) == 3 and len(ends) == 2
    for start, end, taken in zip(starts, ends, takeovers):
        assert stages[end] == taken["stage"] + 1  # given back the tick its stage was reached
        assert taken["handed_back_t"] == pytest.approx(records[end].t)
        # The policy drives again (its own fresh chunks) for 1 s of no progress before the next takeover.
        policy_ticks = records[end:starts[starts > end][0]]
        assert 14 <= len(policy_ticks) <= 17 and all(r.chunk_id >= 0 for r in policy_ticks[3:])
    assert tagged[starts[-1]:].all()


class MovesThenStopsPolicy(ScriptedPolicy):
    """+x until the hand is 8 cm from where it started, then no motion: a policy stuck where it got to."""

    def __init__(self, start_x):
        super().__init__()
        self.start_x = start_x

    def infer(self, obs, seed=None, noise_scale=None):
        moving = obs.state["ee_pos"][-1, 0] < self.start_x + 0.08
        self.action = np.array([0.3 if moving else 0.0, 0, 0, 0, 0, 0, 0.0])
        return super().infer(obs, seed)


def test_a_long_stall_sends_the_arm_back_to_its_start_and_the_policy_starts_over(env):
    q0 = np.asarray(env.robot.get_joint_positions())
    policy = MovesThenStopsPolicy(float(env.robot.get_ee_pose()[0][0]))
    loop = make_loop(env, policy, max_steps=330, execute_k=4, stall_return_s=4.0, stall_return_max=2)
    ticks, chunks = [], []
    loop.on_step = lambda rec, frames: ticks.append((rec.t, rec.q, rec.chunk_id, rec.command.gripper, rec.command.hold))
    loop.on_chunk = lambda chunk: chunks.append((len(ticks), chunk.t_obs))  # (tick it arrived, its observation)
    result = loop.run()
    assert result.stats["returns_to_start"] == 2
    # Ticks that move the arm with no chunk: the two returns, each a contiguous run (then a hold until the
    # first fresh chunk arrives).
    back = [i for i, (_, _, chunk_id, _, hold) in enumerate(ticks) if chunk_id == -1 and not hold]
    runs = np.split(np.array(back), np.flatnonzero(np.diff(back) > 1) + 1)
    assert len(runs) == 2 and all(len(r) > 5 for r in runs)
    for r in runs:
        start_q = ticks[r[0]][1]
        assert np.abs(start_q - q0).max() > 0.05  # it had moved off
        # Rate-limited all the way (0.6 rad/s), the gripper commanded open, and back within 0.02 rad.
        steps = np.abs(np.diff([ticks[i][1] for i in r], axis=0)).max()
        assert steps < 0.6 / 15 + 0.01 and {ticks[i][3] for i in r} == {0.0}
        assert np.abs(ticks[r[-1] + 1][1] - q0).max() < 0.03
        # A chunk that arrives once the return began was asked after it ended: the policy starts over.
        late = [t_obs for tick, t_obs in chunks if tick >= r[0]]
        assert late and min(late) > ticks[r[-1]][0]
    # After each return it moved off in +x again (a fresh request from the start pose), then stalled again.
    assert ticks[runs[1][0]][2] == -1 and ticks[runs[0][-1] + 10][2] > 0


class IdleOperator:
    """A takeover whose operator never takes the arm."""

    def action(self):
        return None


@pytest.mark.parametrize("config, takeover", [({}, None), ({"stall_return_s": 4.0}, IdleOperator())])
def test_without_stall_return_or_with_a_takeover_a_stuck_hand_stays_put(env, config, takeover):
    """Off, or an operator (DAgger's expert) is there to take the arm: the stall is left to them."""
    policy = MovesThenStopsPolicy(float(env.robot.get_ee_pose()[0][0]))
    loop = make_loop(env, policy, max_steps=200, execute_k=4, **config)
    loop.takeover = takeover
    assert loop.run().stats["returns_to_start"] == 0
