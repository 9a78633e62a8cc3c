"""Finetuning: windows from recorded episodes, loss goes down, resume, DDP, video-only episodes, serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_client.recording import write_synthetic_episode
from uwm_robot.checkpoint import init_checkpoint, load_checkpoint
from uwm_robot.config import preset
from uwm_robot.finetune import FinetuneConfig, TrainStep, finetune
from uwm_robot.training_data import WindowDataset, cached_latents, find_episodes, load_training_data

REPO = Path(__file__).resolve().parents[2]
CFG = preset("tiny_lowres")
SHAPES = {cam: CFG.image_shape for cam in CFG.camera_names}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demos")
    for i in range(2):
        write_synthetic_episode(root / f"demo_{i:03d}", n_steps=24, camera_shapes=SHAPES, save_raw_frames=True,
                                metadata={"kind": "demo"}, no_action_steps=0)
    write_synthetic_episode(root / "discarded" / "demo_002", n_steps=10, camera_shapes=SHAPES, save_raw_frames=True,
                            metadata={"kind": "demo"}, success=None, decided_by="none", reason="discarded")
    write_synthetic_episode(root / "failed", n_steps=10, camera_shapes=SHAPES, save_raw_frames=True, success=False)
    return root


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory) -> Path:
    return init_checkpoint("tiny_lowres", tmp_path_factory.mktemp("init") / "ckpt", seed=0)


def small_run(out: Path, data, init: Path, steps: int, **kw) -> FinetuneConfig:
    base = dict(data=[str(d) for d in data], out=str(out), init=str(init), steps=steps, batch_size=4,
                warmup_steps=2, save_every=4, log_every=1, threads=2)
    return FinetuneConfig(**{**base, **kw})


def test_windows_follow_the_official_layout(demo_root, init_ckpt):
    episodes, normalizer = load_training_data([demo_root], CFG)
    assert sorted(e.path.name for e in episodes) == ["demo_000", "demo_001"]  # discarded and failed are skipped
    ep = episodes[0]
    model = load_checkpoint(init_ckpt).model
    latents = cached_latents(model, CFG, episodes, demo_root.parent / "cache.pt", torch.device("cpu"))
    data = WindowDataset(episodes, latents, CFG, normalizer)
    assert len(data) == 2 * 24  # starts -1 .. N-2 per episode
    s = 5
    i = int(np.flatnonzero((data.index[:, 0] == 0) & (data.index[:, 1] == s))[0])
    b = data.batch(np.array([i]), torch.Generator().manual_seed(0))
    cam = CFG.cameras[0]
    np.testing.assert_array_equal(b["obs"][cam][0].numpy(), ep.frames[cam][[s, s + 1]])
    expected = normalizer.action.normalize(ep.actions[s + 1:s + 17])
    np.testing.assert_allclose(b["action"][0].numpy(), expected, atol=1e-6)
    assert b["next_latents"].shape == (1, *CFG.latent_shape) and bool(b["action_mask"][0])
    mean = latents[next(iter(latents))][0]
    # The video target is frames s+17, s+18 (clamped to the last frame of this 24-step episode).
    target_mean = mean[[22, 23]].permute(1, 2, 0, 3, 4)
    assert (b["next_latents"][0] - target_mean).abs().max() < 1.0  # a posterior sample around its mean
    # The first window pads frame 0, as the client pads its history at a reset.
    first = int(np.flatnonzero((data.index[:, 0] == 0) & (data.index[:, 1] == -1))[0])
    b0 = data.batch(np.array([first]))
    np.testing.assert_array_equal(b0["obs"][cam][0].numpy(), ep.frames[cam][[0, 0]])


def test_an_interrupted_latent_pass_keeps_what_it_encoded(demo_root, init_ckpt, tmp_path):
    episodes, _ = load_training_data([demo_root], CFG)
    model = load_checkpoint(init_ckpt).model
    cache = tmp_path / "cache.pt"

    def stop_after_first(eps):
        yield eps[0]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_latents(model, CFG, episodes, cache, torch.device("cpu"), progress=stop_after_first, save_every=1)
    kept = torch.load(cache, weights_only=True)["latents"]
    assert len(kept) == 1
    encoded = []
    full = cached_latents(model, CFG, episodes, cache, torch.device("cpu"),
                          progress=lambda eps: (encoded.append(e.path.name) or e for e in eps))
    assert encoded == [episodes[1].path.name]  # the resumed pass encodes only the missing episode
    first = next(iter(kept))
    torch.testing.assert_close(full[first][0], kept[first][0])


def test_a_root_given_twice_weights_its_episodes_and_encodes_them_once(demo_root, init_ckpt, tmp_path):
    once, _ = load_training_data([demo_root], CFG)
    twice, normalizer = load_training_data([demo_root, demo_root], CFG)
    assert len(twice) == 2 * len(once)
    encoded = []
    latents = cached_latents(load_checkpoint(init_ckpt).model, CFG, twice, tmp_path / "cache.pt", torch.device("cpu"),
                             progress=lambda eps: (encoded.append(e.path.name) or e for e in eps))
    assert sorted(encoded) == sorted(e.path.name for e in once)
    assert len(WindowDataset(twice, latents, CFG, normalizer)) == 2 * len(WindowDataset(once, latents, CFG, normalizer))


def fixed_loss(model, data) -> float:
    """The loss on fixed batches and fixed noise (eval mode: centre crop), averaged."""
    model.eval()
    vals = []
    with torch.no_grad():
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            b = data.batch(np.arange(seed, len(data), 3)[:16], g)
            loss, _ = TrainStep(model)(b["obs"], b["next_latents"], b["action"], b["action_mask"], g)
            vals.append(loss.item())
    return float(np.mean(vals))


def test_a_few_steps_lower_the_loss_and_the_run_resumes(demo_root, init_ckpt, tmp_path):
    out = tmp_path / "run"
    episodes, normalizer = load_training_data([demo_root], CFG)
    before_model = load_checkpoint(init_ckpt).model
    latents = cached_latents(before_model, CFG, episodes, out / "latent_cache.pt", torch.device("cpu"))
    data = WindowDataset(episodes, latents, CFG, normalizer)
    before = fixed_loss(before_model, data)

    finetune(small_run(out, [demo_root], init_ckpt, steps=8, lr=1e-3), progress=False)
    state = torch.load(out / "train_state.pt", weights_only=False)
    assert state["step"] == 8
    # A state written before the augmentation fields existed (their defaults) still resumes.
    for key in ("random_crop", "color_jitter"):
        del state["model_config"][key]
    torch.save(state, out / "train_state.pt")
    # A re-run with more steps resumes from the saved state instead of starting over.
    finetune(small_run(out, [demo_root], init_ckpt, steps=20, lr=1e-3), progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    after = fixed_loss(load_checkpoint(out / "checkpoint").model, data)
    assert after < 0.8 * before, (before, after)
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 20 and meta["final"] and meta["episodes"] == 2
    # The lineage: the init's own meta is kept, so a chain of finetunes names every step back to the first.
    assert meta["init_meta"] == json.loads((init_ckpt / "meta.json").read_text())
    assert (out / "loss.png").stat().st_size > 10_000
    # The served normaliser holds the data's statistics, not the init's identity-like default.
    served = load_checkpoint(out / "checkpoint").normalizer
    assert served == normalizer and not np.allclose(served.action.scale, 1.0)


def test_video_only_episodes_only_train_the_video_half(demo_root, init_ckpt, tmp_path):
    model = load_checkpoint(init_ckpt).model
    episodes, normalizer = load_training_data([demo_root / "demo_000"], CFG, video_roots=[demo_root / "demo_001"])
    assert episodes[1].actions is None
    latents = cached_latents(model, CFG, episodes, tmp_path / "cache.pt", torch.device("cpu"))
    data = WindowDataset(episodes, latents, CFG, normalizer)
    mask = data.batch(np.arange(len(data)))["action_mask"]
    assert mask[:24].all() and not mask[24:].any()

    b = data.batch(np.array([3, 30, 31]), torch.Generator().manual_seed(0))  # one labelled, two video windows
    step = TrainStep(model).eval()

    def losses(action):
        return step(b["obs"], b["next_latents"], action, b["action_mask"], torch.Generator().manual_seed(1))[1]

    base = losses(b["action"])
    garbage = b["action"].clone()
    garbage[1:] = 5.0  # the video windows' action slots
    other = losses(garbage)
    # Masked samples' actions cannot change the action loss (they only shift the video prediction).
    assert other["action_loss"] == pytest.approx(base["action_loss"], abs=1e-7)
    all_video = step(b["obs"], b["next_latents"], b["action"], torch.zeros(3, dtype=torch.bool),
                     torch.Generator().manual_seed(1))[1]
    assert all_video["action_loss"] == 0.0 and all_video["loss"] == pytest.approx(all_video["dynamics_loss"])


def test_takeover_episodes_label_the_policy_only_with_the_operators_steps(init_ckpt, tmp_path):
    """DAgger (HG-DAgger's rule): in an episode where an operator took the arm at step 10, the policy's
    own steps before it train the video half only; windows whose 16 actions are all the operator's train both."""
    path = write_synthetic_episode(tmp_path / "dagger", n_steps=24, camera_shapes=SHAPES, save_raw_frames=True,
                                   no_action_steps=0, takeover_from=10)
    episodes, normalizer = load_training_data([path], CFG)
    assert np.isnan(episodes[0].actions[:10]).all() and np.isfinite(episodes[0].actions[10:]).all()
    latents = cached_latents(load_checkpoint(init_ckpt).model, CFG, episodes, tmp_path / "cache.pt", torch.device("cpu"))
    data = WindowDataset(episodes, latents, CFG, normalizer)
    mask = data.batch(np.arange(24))["action_mask"]
    assert mask.tolist() == [start + 1 >= 10 for start in range(-1, 23)]  # a window's actions: start+1 ...
    assert data.num_labelled_windows == 14

    # --skip-unlabelled-windows: only the operator's windows are left, every one with its actions.
    skipped = WindowDataset(episodes, latents, CFG, normalizer, skip_unlabelled=True)
    assert len(skipped) == 14 and skipped.index[:, 1].tolist() == list(range(9, 23))
    b = skipped.batch(np.arange(14))
    assert b["action_mask"].all()
    assert torch.equal(b["action"][0], data.batch(np.array([10]))["action"][0])

    from uwm_robot.training_data import TrainingDataError

    episodes[0].actions[20:] = np.nan  # the arm given back after 10 operator steps: no window of 16 is whole
    assert WindowDataset(episodes, latents, CFG, normalizer).num_labelled_windows == 0
    with pytest.raises(TrainingDataError, match="fully labelled"):
        WindowDataset(episodes, latents, CFG, normalizer, skip_unlabelled=True)


def test_an_episode_cut_mid_task_does_not_teach_stopping_at_its_end(tmp_path):
    """A whole episode ends at rest: its last windows repeat the final action past the end. A takeover cut
    short after the lid's pull (scripts/cut_takeovers.py) does not; repeating its last action would label
    "hold still with the lid just opened", so only the windows whose 16 actions it recorded are labelled."""
    from uwm_robot.training_data import labelled_windows

    paths = [write_synthetic_episode(tmp_path / name, n_steps=24, camera_shapes=SHAPES, save_raw_frames=True,
                                     no_action_steps=0, metadata=meta)
             for name, meta in (("whole", None), ("cut", {"cut_from": {"path": "round/trial_005", "num_steps": 90}}))]
    (whole, cut), _ = load_training_data(paths, CFG)
    assert not whole.ends_mid_task and cut.ends_mid_task
    assert labelled_windows(whole, CFG.action_len).all()
    # starts -1 .. 22; the last whose actions (start+1 .. start+16) are all recorded starts at 7
    assert labelled_windows(cut, CFG.action_len).tolist() == [start <= 7 for start in range(-1, 23)]


def test_a_trial_an_expert_led_labels_only_its_takeover_steps_or_none(tmp_path):
    """A round whose expert led each trial to a stage (`--takeover-lead-until`): the lead and the policy's
    steps are untagged; with no takeover in the trial nothing in it is a label (not the executed steps)."""
    lead = {"expert_lead": {"until": "cup in the pot", "handed_over_t": 0.5}}
    paths = [write_synthetic_episode(tmp_path / name, n_steps=24, camera_shapes=SHAPES, save_raw_frames=True,
                                     no_action_steps=0, metadata=meta, takeover_from=takeover_from)
             for name, meta, takeover_from in (("kept", lead, None), ("taken", lead, 10), ("plain", None, None))]
    (kept, taken, plain), _ = load_training_data(paths, CFG)
    assert kept.actions is None
    assert np.isnan(taken.actions[:10]).all() and np.isfinite(taken.actions[10:]).all()
    assert np.isfinite(plain.actions).all()  # a rollout with neither: its executed steps, as before


def test_chunk_labelled_rollouts_train_on_the_served_chunks(init_ckpt, tmp_path):
    """Self-imitation: a rollout given as chunk data labels the window whose newest frame is a chunk's
    observation with that whole chunk (here the step-8 action repeated), not with the executed steps
    (whose gripper keeps closing); its other windows train the video half, or are left out."""
    from robot_client.recording import synthetic_step
    from uwm_robot.action_codec import encode

    path = write_synthetic_episode(tmp_path / "rollout", n_steps=24, camera_shapes=SHAPES, save_raw_frames=True,
                                   no_action_steps=0)  # chunks observed at steps 0, 8, 16
    episodes, normalizer = load_training_data([], CFG, chunk_roots=[path])
    ep = episodes[0]
    assert ep.actions is None and sorted(ep.chunk_actions) == [-1, 7, 15]
    latents = cached_latents(load_checkpoint(init_ckpt).model, CFG, episodes, tmp_path / "cache.pt", torch.device("cpu"))
    data = WindowDataset(episodes, latents, CFG, normalizer)
    b = data.batch(np.arange(24))
    assert b["action_mask"].tolist() == [start in (-1, 7, 15) for start in range(-1, 23)]
    served = normalizer.action.normalize(np.tile(encode(synthetic_step(8).action), (16, 1)))
    np.testing.assert_allclose(b["action"][8].numpy(), served, atol=1e-5)
    executed = normalizer.action.normalize(np.stack([encode(synthetic_step(i).action) for i in range(8, 24)]))
    assert np.abs(b["action"][8].numpy() - executed).max() > 0.5
    skipped = WindowDataset(episodes, latents, CFG, normalizer, skip_unlabelled=True)
    assert skipped.index[:, 1].tolist() == [-1, 7, 15] and skipped.batch(np.arange(3))["action_mask"].all()

    finetune(small_run(tmp_path / "run", [], init_ckpt, steps=2, chunk_data=[str(path)]), progress=False)
    meta = json.loads((tmp_path / "run" / "checkpoint" / "meta.json").read_text())
    assert meta["chunk_data"] == [str(path)] and meta["episodes"] == 1
    with pytest.raises(ValueError, match="--chunk-data"):
        finetune(small_run(tmp_path / "none", [], init_ckpt, steps=2), progress=False)


def test_skipping_unlabelled_windows_keeps_action_free_video(demo_root, init_ckpt, tmp_path):
    episodes, normalizer = load_training_data([demo_root / "demo_000"], CFG, video_roots=[demo_root / "demo_001"])
    latents = cached_latents(load_checkpoint(init_ckpt).model, CFG, episodes, tmp_path / "cache.pt", torch.device("cpu"))
    full = WindowDataset(episodes, latents, CFG, normalizer)
    skipped = WindowDataset(episodes, latents, CFG, normalizer, skip_unlabelled=True)
    assert len(skipped) == len(full) and skipped.num_labelled_windows == full.num_labelled_windows == 24


def test_finetuned_checkpoint_round_trips_through_the_server(demo_root, init_ckpt, tmp_path, assert_same_result):
    from policy_server.local import random_observation
    from uwm_robot.client import PolicyClient
    from uwm_robot.inference import UWMPolicy
    from uwm_robot.local_server import LocalServer

    out = tmp_path / "run"
    # bf16 autocast on the CPU (the speed path for CPU training) trains with finite losses.
    ckpt = finetune(small_run(out, [demo_root], init_ckpt, steps=2, fp16_checkpoint=True, amp="bf16"), progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    # ... but encodes its latent cache in full precision (bf16 convolutions are 10x slower on such CPUs)
    episodes, _ = load_training_data([demo_root], CFG)
    fp32 = cached_latents(load_checkpoint(init_ckpt).model, CFG, episodes, tmp_path / "fp32.pt", torch.device("cpu"))
    cached = torch.load(out / "latent_cache.pt", weights_only=True)["latents"]
    assert all(torch.equal(cached[key][0], mean) for key, (mean, _) in fp32.items())
    local = UWMPolicy.load(ckpt)
    with LocalServer(ckpt) as srv, PolicyClient(srv.address, timeout_s=60) as client:
        meta = client.hello()
        assert meta["checkpoint_hash"] == json.loads((ckpt / "meta.json").read_text())["checkpoint_hash"]
        images, stamps = random_observation(meta, 3)
        got = client.infer(images, timestamps=stamps, seed=5)
    want = local.infer({c: v[None] for c, v in images.items()}, seed=5)
    assert got["actions"].shape == (16, 7)
    assert_same_result(got["actions"], want["actions"][0])


def test_normalizer_init_keeps_the_init_checkpoints_statistics(demo_root, init_ckpt, tmp_path, capsys):
    """A later round on the same task keeps the action space the policy learnt (`--normalizer init`);
    the default refits min-max statistics on --data, as the official recipe does for a new task."""
    from uwm_robot.normalizer import LinearNormalizer, NormalizerSet
    from uwm_robot.training_data import actions_beyond_range

    kept = load_checkpoint(init_ckpt).normalizer
    episodes, fitted = load_training_data([demo_root], CFG)
    assert fitted.to_dict() != kept.to_dict()  # otherwise this test could not tell the two apart
    for mode, want in (("init", kept), ("data", fitted)):
        ckpt = finetune(small_run(tmp_path / mode, [demo_root], init_ckpt, steps=1, normalizer=mode), progress=False)
        assert load_checkpoint(ckpt).normalizer.to_dict() == want.to_dict()
    assert "does not cover" not in capsys.readouterr().out  # the synthetic actions lie within [-1, 1]

    dim = kept.action.dim
    narrow = NormalizerSet(LinearNormalizer(np.full(dim, 0.1), np.zeros(dim)), kept.lowdim)
    beyond = actions_beyond_range(narrow, episodes)
    assert beyond and all(0 < share <= 1 for share in beyond.values())
    assert actions_beyond_range(fitted, episodes) == {}
    with pytest.raises(ValueError, match="give --init"):
        FinetuneConfig(data=[str(demo_root)], out=str(tmp_path / "x"), normalizer="init")


def test_data_errors_are_clear(tmp_path, demo_root, init_ckpt):
    from uwm_robot.training_data import TrainingDataError

    with pytest.raises(TrainingDataError, match="no usable episodes"):
        load_training_data([demo_root / "discarded"], CFG)
    other = tmp_path / "other"
    write_synthetic_episode(other, n_steps=4, camera_shapes={"exterior_image_1_left": (56, 72)}, save_raw_frames=True)
    with pytest.raises(TrainingDataError, match="no camera"):
        load_training_data([other], CFG)
    assert find_episodes([demo_root]) == [demo_root / "demo_000", demo_root / "demo_001"]


def test_torchrun_ddp_two_processes(demo_root, init_ckpt, tmp_path):
    """The same command under torchrun: 2 CPU processes (gloo), gradients all-reduced."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "uwm_robot.cli", "finetune", "--data", str(demo_root), "--init", str(init_ckpt), "--out", str(out),
           "--steps", "3", "--batch-size", "2", "--warmup-steps", "1", "--log-every", "1", "--threads", "1",
           "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]  # one writer (rank 0)
    assert load_checkpoint(out / "checkpoint").meta["step"] == 3


def test_vae_fingerprint_follows_values_not_the_sign_of_zero():
    """An EMA step turns the frozen VAE's -0.0 weights into 0.0; that must not throw the latent cache away."""
    from uwm_robot.checkpoint import build_model
    from uwm_robot.training_data import vae_fingerprint

    torch.manual_seed(0)
    model = build_model(CFG)
    weight = next(model.obs_encoder.vae.parameters())
    with torch.no_grad():
        weight.view(-1)[0] = -0.0
        signed = vae_fingerprint(model, CFG)
        weight.view(-1)[0] = 0.0
        assert vae_fingerprint(model, CFG) == signed
        weight.view(-1)[0] = 1e-3  # a real change still counts
        assert vae_fingerprint(model, CFG) != signed


def test_cli_passes_skip_unlabelled_windows_and_chunk_data(monkeypatch, tmp_path):
    import argparse

    import uwm_robot.finetune as ft

    seen = []
    monkeypatch.setattr(ft, "finetune", lambda cfg: seen.append(cfg))
    parser = argparse.ArgumentParser()
    ft.add_arguments(parser)
    for extra, want in (([], False), (["--skip-unlabelled-windows"], True)):
        ft.run(parser.parse_args(["--data", "d", "--out", str(tmp_path), *extra]))
        assert seen[-1].skip_unlabelled_windows is want
    ft.run(parser.parse_args(["--chunk-data", "r1", "r2", "--out", str(tmp_path)]))
    assert seen[-1].chunk_data == ("r1", "r2") and seen[-1].data == []


def test_episodes_with_only_their_videos_are_flagged_lossy_and_warned_of(demo_root, init_ckpt, tmp_path, capsys):
    """H.264 (yuv420p) frames are a few grey levels off what the policy sees live (docs/results.md session
    41): such episodes are read, marked, and named in a warning."""
    video_only = write_synthetic_episode(tmp_path / "rollouts" / "trial_000", n_steps=24, camera_shapes=SHAPES,
                                         save_raw_frames=False, no_action_steps=0)
    episodes, _ = load_training_data([demo_root, tmp_path / "rollouts"], CFG)
    assert [ep.lossy_frames for ep in episodes] == [False, False, True]
    raw = episodes[0].frames[CFG.camera_names[0]]
    assert raw.dtype == np.uint8 and raw.shape[1:3] == CFG.image_shape
    finetune(small_run(tmp_path / "plain", [demo_root], init_ckpt, steps=1), progress=False)
    assert "H.264" not in capsys.readouterr().out
    finetune(small_run(tmp_path / "mixed", [demo_root, video_only], init_ckpt, steps=1), progress=False)
    out = capsys.readouterr().out
    assert "1 of 3 episodes (action-labelled ones) have only their H.264 videos" in out and "--raw-frames" in out
