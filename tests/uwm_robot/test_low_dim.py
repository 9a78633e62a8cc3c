"""Proprioception (`ModelConfig.low_dim`, the official `use_low_dim`): config, training windows,
the condition, the server's check of `InferRequest.state`, and the client's state history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policy_server.local import make_preset_checkpoint, random_observation
from robot_client.cameras.base import Frame
from robot_client.observation import ObservationHistory
from robot_client.recording import write_synthetic_episode
from uwm_robot.config import ConfigError, ModelConfig, preset
from uwm_robot.finetune import FinetuneConfig, finetune
from uwm_robot.inference import UWMPolicy
from uwm_robot.training_data import TrainingDataError, WindowDataset, cached_latents, load_training_data

CFG = preset("tiny_lowres_proprio")
LOW_DIM = {"ee_pos": 3, "gripper_width": 1, "q": 7}


def robot_state(rng: np.random.Generator, n_obs: int = 2) -> dict[str, np.ndarray]:
    return {k: rng.normal(size=(n_obs, d)) for k, d in LOW_DIM.items()}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    # Perturbed: a fresh DiT's zeroed adaLN layers would ignore the condition.
    return make_preset_checkpoint("tiny_lowres_proprio", tmp_path_factory.mktemp("ckpt") / "proprio", perturb=0.5)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos")
    shapes = {cam: CFG.image_shape for cam in CFG.camera_names}
    for i in range(2):
        write_synthetic_episode(root / f"demo_{i:03d}", n_steps=20, camera_shapes=shapes, save_raw_frames=True,
                                metadata={"kind": "demo"}, no_action_steps=0)
    return root


def test_config_round_trips_and_widens_the_condition(tmp_path):
    assert dict(CFG.low_dim) == LOW_DIM and CFG.low_dim_keys == ("ee_pos", "gripper_width", "q")
    vision_only = preset("tiny_lowres_nocrop")
    assert CFG.global_cond_dim == vision_only.global_cond_dim + 2 * 11  # 11 state dims x 2 frames
    CFG.save(tmp_path / "config.yaml")
    assert "ee_pos: 3" in (tmp_path / "config.yaml").read_text()  # a readable mapping
    assert ModelConfig.load(tmp_path / "config.yaml") == CFG
    assert ModelConfig.from_dict({**CFG.to_dict(), "low_dim": [["ee_pos", 3], ["gripper_width", 1], ["q", 7]]}) == CFG
    assert vision_only.to_dict()["low_dim"] == {} and ModelConfig.from_dict(vision_only.to_dict()) == vision_only
    for bad in ({"ee_pos": 0}, {"wrist_image_left": 3}, "ee_pos"):
        with pytest.raises(ConfigError, match="low_dim"):
            CFG.replace(low_dim=bad)


def test_windows_carry_the_normalised_state_of_the_observation_frames(demos, ckpt, tmp_path):
    episodes, normalizer = load_training_data([demos], CFG)
    ep = episodes[0]
    assert sorted(normalizer.lowdim) == sorted(LOW_DIM)
    assert ep.state["gripper_width"].shape == (20, 1) and ep.state["q"].shape == (20, 7)
    ee = np.concatenate([e.state["ee_pos"] for e in episodes])
    np.testing.assert_allclose(normalizer.lowdim["ee_pos"].normalize(ee)[:, 0].min(), -1.0)
    np.testing.assert_allclose(normalizer.lowdim["ee_pos"].normalize(ee)[:, 0].max(), 1.0)
    latents = cached_latents(UWMPolicy.load(ckpt).model, CFG, episodes, tmp_path / "cache.pt", torch.device("cpu"))
    data = WindowDataset(episodes, latents, CFG, normalizer)
    s = 5
    i = int(np.flatnonzero((data.index[:, 0] == 0) & (data.index[:, 1] == s))[0])
    b = data.batch(np.array([i, 0]))  # window (0, 5) and the first window, which pads step 0
    for key in LOW_DIM:
        want = normalizer.lowdim[key].normalize(ep.state[key][[s, s + 1]])
        np.testing.assert_allclose(b["obs"][key][0].numpy(), want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(b["obs"][key][1].numpy(), normalizer.lowdim[key].normalize(ep.state[key][[0, 0]]),
                                   rtol=1e-6, atol=1e-6)
    with pytest.raises(TrainingDataError, match="no recorded state 'joint_vel'"):
        load_training_data([demos], CFG.replace(low_dim={"joint_vel": 7}))


def test_the_policy_conditions_on_the_normalised_state(ckpt):
    policy = UWMPolicy.load(ckpt)
    rng = np.random.default_rng(0)
    images = {c: v[None] for c, v in random_observation(policy.metadata(), rng)[0].items()}
    state_a = {k: v[None] for k, v in robot_state(rng).items()}
    state_b = {k: v[None] for k, v in robot_state(rng).items()}
    a = policy.infer({**images, **state_a}, seed=3)["actions"]
    np.testing.assert_array_equal(a, policy.infer({**images, **state_a}, seed=3)["actions"])
    assert np.abs(a - policy.infer({**images, **state_b}, seed=3)["actions"]).max() > 1e-4
    # The checkpoint's normaliser scales the state before the model sees it.
    policy.normalizer.lowdim["q"].scale = policy.normalizer.lowdim["q"].scale * 2
    doubled = {**state_a, "q": state_a["q"] * 2}
    np.testing.assert_allclose(policy.infer({**images, **doubled}, seed=3)["actions"], a, atol=1e-5)
    with pytest.raises(KeyError, match="missing state 'ee_pos'"):
        policy.infer(images, seed=3)
    with pytest.raises(ValueError, match=r"state 'q': expected \(B, 2, 7\)"):
        policy.infer({**images, **state_a, "q": np.zeros((1, 2, 6))}, seed=3)


def test_the_server_requires_the_state_the_model_conditions_on(ckpt, assert_same_result):
    from uwm_robot.client import PolicyClient, PolicyServerError
    from uwm_robot.local_server import LocalServer

    local = UWMPolicy.load(ckpt)
    rng = np.random.default_rng(1)
    with LocalServer(ckpt) as srv, PolicyClient(srv.address, timeout_s=60, validate=False) as client:
        meta = client.hello()
        assert meta["state_shapes"] == {"ee_pos": [2, 3], "gripper_width": [2, 1], "q": [2, 7]}
        images, stamps = random_observation(meta, rng)
        state = robot_state(rng)
        with pytest.raises(PolicyServerError, match=r"state: missing \['ee_pos', 'gripper_width', 'q'\]") as e:
            client.infer(images, timestamps=stamps, seed=1)
        assert e.value.field == "state"
        with pytest.raises(PolicyServerError, match="state.q: expected float robot state of shape"):
            client.infer(images, state={**state, "q": np.zeros((2, 6))}, seed=1)
        # Other state keys (the client sends the whole robot state) are logged, not refused.
        got = client.infer(images, timestamps=stamps, state={**state, "ee_quat": np.zeros((2, 4))}, seed=1)
    want = local.infer({**{c: v[None] for c, v in images.items()}, **{k: v[None] for k, v in state.items()}}, seed=1)
    assert_same_result(got["actions"], want["actions"][0])


def test_the_client_history_stacks_the_robot_state_with_its_frames():
    hist = ObservationHistory({"wrist_image_left": (8, 8)}, n_obs_steps=2)
    frame = Frame(np.zeros((8, 8, 3), np.uint8), None, 0, 0, "sim")

    def tick(i):
        hist.push({"wrist_image_left": frame}, i / 15, {"q": np.full(7, i), "gripper_width": 0.01 * i})

    tick(0)
    obs = hist.snapshot()  # right after a reset the first tick is repeated, as the frames are
    np.testing.assert_array_equal(obs.state["q"], np.zeros((2, 7)))
    tick(1)
    tick(2)
    obs = hist.snapshot()
    np.testing.assert_array_equal(obs.state["q"][:, 0], [1, 2])
    np.testing.assert_allclose(obs.state["gripper_width"], [[0.01], [0.02]])
    hist.reset()
    tick(5)
    np.testing.assert_array_equal(hist.snapshot().state["q"][:, 0], [5, 5])


def test_a_few_finetune_steps_save_the_state_statistics(demos, tmp_path):
    from uwm_robot.checkpoint import init_checkpoint

    init = init_checkpoint("tiny_lowres_proprio", tmp_path / "init")
    ckpt = finetune(FinetuneConfig(data=[str(demos)], out=str(tmp_path / "run"), init=str(init), steps=2, batch_size=4,
                                   warmup_steps=1, save_every=2, log_every=1, threads=2), progress=False)
    served = UWMPolicy.load(ckpt)
    _, fitted = load_training_data([demos], CFG)
    assert served.normalizer == fitted and served.config == CFG
    out = served.infer(served.blank_images(1), seed=0)
    assert out["actions"].shape == (1, 16, 7) and np.isfinite(out["actions"]).all()
