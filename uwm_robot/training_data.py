"""Recorded episodes -> UWM training windows, with the VAE latents of every frame cached once.

A window starting at step s holds, as the official DROID batches do (uwm.md section 6):
    obs frames      s, s+1             (the model's two observation frames)
    actions         s+1 .. s+16        (action 0 is the action at the newest observed frame)
    next frames     s+17, s+18         (the video-prediction target)
Indices are clamped to the episode, so the first window repeats frame 0 (as the client pads its
history at a reset) and the last ones repeat the final frame and action.

Episodes without actions (video-only, or passed as `video_roots`) give windows whose
`action_mask` is False: they train only the video half of the model.

Policy rollouts passed as `chunk_roots` are labelled by the chunks the policy was served
(`chunks.jsonl`), not by the actions it executed: the window whose newest frame is a chunk's
observation gets that whole chunk. The executed actions splice a fresh sample every few ticks and
are not a sample of the policy; each chunk is (self-imitation on successful trials).

A model with low-dim inputs (`ModelConfig.low_dim`) also gets the recorded robot state of the two
observation steps (`ee_pos`, `q`, `gripper_width`...), min-max normalised like the actions.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import action_codec
from .config import ModelConfig
from .episode import list_episodes, load_episode, read_meta
from .images import resize_frames
from .model.transforms import video_transform
from .normalizer import LinearNormalizer, NormalizerSet

log = logging.getLogger(__name__)


class TrainingDataError(ValueError):
    """The episodes cannot be used to train this model (none found, cameras missing...)."""


@dataclass
class TrainingEpisode:
    path: Path
    frames: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8 at the model's image_shape
    actions: np.ndarray | None  # (N, action_dim) model-space actions, un-normalised; None: video only
    state: dict[str, np.ndarray]  # low-dim key -> (N, D) float, un-normalised ({} when the episode has none)
    # window start -> (action_len, action_dim) model-space actions, un-normalised: the chunk served for
    # the observation at step start + 1 (chunk-labelled rollouts; None otherwise)
    chunk_actions: dict[int, np.ndarray] | None = None
    # Frames decoded from the H.264 videos (no raw frames saved): lossy, unlike what the policy sees live
    lossy_frames: bool = False
    # Cut short mid-task (scripts/cut_takeovers.py): what follows its last step is unknown, so the
    # final action may not be repeated past the end as a label ("stop here")
    ends_mid_task: bool = False

    @property
    def num_steps(self) -> int:
        return len(next(iter(self.frames.values())))


def usable(meta: dict) -> tuple[bool, str]:
    """Finished, not discarded, not labelled a failure."""
    if meta.get("status") != "finished":
        return False, "not finished"
    outcome = meta.get("outcome") or {}
    if meta.get("discarded") or outcome.get("reason") == "discarded":
        return False, "discarded"
    if outcome.get("success") is False:
        return False, "failed"
    return True, ""


def find_episodes(roots: list[str | Path]) -> list[Path]:
    """Usable episode directories under the roots (a discarded/ folder is skipped with its contents)."""
    found = []
    for root in roots:
        for path in list_episodes(root):
            ok, why = usable(read_meta(path))
            if ok:
                found.append(path)
            else:
                log.info("skipping %s: %s", path, why)
    return found


def chunk_labels(chunks: list[dict], step_times: np.ndarray, cfg: ModelConfig, path: Path) -> dict[int, np.ndarray]:
    """Window start -> the served chunk as model-space actions, for each chunk whose observation
    time is a recorded step (its window's newest frame)."""
    labels = {}
    dt = float(np.median(np.diff(step_times))) if len(step_times) > 1 else 1.0
    for c in chunks:
        o = int(np.argmin(np.abs(step_times - c["t_obs"])))
        if abs(step_times[o] - c["t_obs"]) > dt / 2:
            continue  # observed before recording started or after it ended
        a = action_codec.encode(np.asarray(c["actions"], dtype=np.float64)).astype(np.float32)
        if a.shape != (cfg.action_len, cfg.action_dim):
            raise TrainingDataError(f"{path}: a served chunk is {a.shape}, the model's is "
                                    f"({cfg.action_len}, {cfg.action_dim})")
        labels[o - 1] = a
    return labels


def read_episode(path: Path, cfg: ModelConfig, with_actions: bool = True, chunk_labelled: bool = False) -> TrainingEpisode:
    """`chunk_labelled`: label the windows by the served chunks (see the module docstring), not by the steps."""
    ep = load_episode(path, load_chunks=chunk_labelled)
    missing = [c for c in cfg.cameras if c not in ep.cameras]
    if missing:
        raise TrainingDataError(f"{path}: no camera(s) {missing}; the model needs {list(cfg.cameras)}, "
                                f"the episode has {ep.cameras}")
    n = ep.num_steps
    lossy = any(cam not in ep.raw_frames for cam in cfg.cameras)
    frames = {}
    for cam in cfg.cameras:
        f = np.asarray(ep.frames(cam)[:n])
        n = min(n, len(f))
        frames[cam] = np.array(resize_frames(f, cfg.image_shape))  # in memory, writable
    frames = {cam: f[:n] for cam, f in frames.items()}
    actions, chunk_actions = None, None
    if chunk_labelled:
        chunk_actions = chunk_labels(ep.chunks, np.asarray(ep.steps["t"][:n], dtype=np.float64), cfg, path)
        if not chunk_actions:
            raise TrainingDataError(f"{path}: no served chunk matches a recorded step (chunks.jsonl missing?)")
    elif with_actions:
        a = np.asarray(ep.steps["action_model"][:n], dtype=np.float32)
        if a.shape[-1] != cfg.action_dim:
            raise TrainingDataError(f"{path}: actions are {a.shape[-1]}-d, the model's are {cfg.action_dim}-d")
        if "intervention" in ep.steps:
            taken = np.asarray(ep.steps["intervention"][:n], dtype=bool)
            # DAgger (HG-DAgger's rule): only the operator's steps label the policy. A round whose expert led
            # each trial to a stage labels nothing else, even in a trial it never had to take over.
            if taken.any() or ep.meta.get("expert_lead"):
                a = np.where(taken[:, None], a, np.nan)
        if np.isfinite(a).any():
            actions = a
    state = {}
    for key, dim in cfg.low_dim:
        if key not in ep.steps:
            if actions is not None:
                raise TrainingDataError(f"{path}: no recorded state {key!r}; the model's low-dim inputs are "
                                        f"{dict(cfg.low_dim)}, the episode records {sorted(ep.steps)}")
            continue  # video only: zeros stand in, as the official video items carry
        x = np.asarray(ep.steps[key][:n], dtype=np.float64).reshape(n, -1)
        if x.shape[1] != dim:
            raise TrainingDataError(f"{path}: state {key!r} is {x.shape[1]}-d, the model's low_dim says {dim}")
        state[key] = x
    return TrainingEpisode(path, frames, actions, state, chunk_actions, lossy_frames=lossy,
                           ends_mid_task="cut_from" in ep.meta)


def fit_normalizer(episodes: list[TrainingEpisode], cfg: ModelConfig) -> NormalizerSet:
    """Min-max statistics of every action (the official normaliser) and of every low-dim input the
    action-labelled episodes hold."""
    labelled = [e for e in episodes if e.actions is not None or e.chunk_actions]
    rows = labelled_action_rows(labelled)
    if not rows:
        raise TrainingDataError("no episode has actions: at least one action-labelled episode is needed")
    lowdim = {key: LinearNormalizer.from_data(np.concatenate([e.state[key] for e in labelled])) for key in cfg.low_dim_keys}
    return NormalizerSet(LinearNormalizer.from_data(np.concatenate(rows)), lowdim)


def labelled_action_rows(episodes: list[TrainingEpisode]) -> list[np.ndarray]:
    """Per episode with actions, its labelled steps (finite rows; a takeover episode leaves the
    policy's own steps unlabelled), leaving out episodes with none."""
    rows = [e.actions[np.isfinite(e.actions).all(axis=1)] for e in episodes if e.actions is not None]
    rows += [np.concatenate(list(e.chunk_actions.values())) for e in episodes if e.chunk_actions]
    return [r for r in rows if len(r)]


def actions_beyond_range(normalizer: NormalizerSet, episodes: list[TrainingEpisode], tolerance: float = 0.02) -> dict[int, float]:
    """Action dimensions whose labelled values fall past a kept normaliser's [-1, 1] (beyond `tolerance`):
    {dimension: share of its values}, empty when the normaliser covers the data."""
    rows = labelled_action_rows(episodes)
    if not rows:
        return {}
    outside = np.abs(normalizer.action.normalize(np.concatenate(rows))) > 1.0 + tolerance
    share = outside.mean(axis=0)
    return {int(d): float(share[d]) for d in np.flatnonzero(share)}


# ---- latent cache ------------------------------------------------------------------------------------
def vae_fingerprint(model, cfg: ModelConfig) -> str:
    """Changes when the VAE weights or the preprocessing that feeds it change."""
    h = hashlib.sha256()
    h.update(repr((cfg.image_shape, cfg.resize_shape, cfg.crop_shape, cfg.vae)).encode())
    for name, t in sorted(model.obs_encoder.vae.state_dict().items()):
        h.update(name.encode())
        # + 0.0 turns -0.0 into 0.0: an EMA update flips the sign of zeros in the frozen VAE without
        # changing its values, and must not invalidate the cache.
        h.update((t.detach().cpu().float() + 0.0).numpy().tobytes())
    return h.hexdigest()[:16]


def episode_key(ep: TrainingEpisode) -> str:
    return f"{ep.path.resolve()}|{ep.num_steps}"


@torch.no_grad()
def encode_latents(model, cfg: ModelConfig, ep: TrainingEpisode, device: torch.device,
                   batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior (mean, std) of every frame: (N, V, C, h, w) each, views in model order, from the
    eval (centre) crop and colours: the video target does not move with the conditioning crop or jitter
    (the official code augments the target too; a fixed target is what lets it be cached)."""
    vae = model.obs_encoder.vae
    means, stds = [], []
    for cam in cfg.cameras:
        m_cam, s_cam = [], []
        frames = torch.from_numpy(ep.frames[cam])
        for chunk in frames.split(batch):
            pixels = video_transform(chunk[None], cfg.resize_shape, cfg.crop_shape, train=False)  # (1, 3, T, h, w)
            flat = pixels[0].transpose(0, 1).to(device)  # (T, 3, h, w)
            m, s = vae.encode_distribution(flat)
            m_cam.append(m.float().cpu())
            s_cam.append(s.float().cpu())
        means.append(torch.cat(m_cam))
        stds.append(torch.cat(s_cam))
    return torch.stack(means, dim=1), torch.stack(stds, dim=1)


def cached_latents(model, cfg: ModelConfig, episodes: list[TrainingEpisode], cache_path: Path,
                   device: torch.device, progress=None, save_every: int = 10) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Latents per episode, computed once and kept in `cache_path` (recomputed if the VAE changed).
    The cache is also written every `save_every` newly encoded episodes, so a stopped pass resumes."""
    fingerprint = vae_fingerprint(model, cfg)
    cache: dict = {}
    if cache_path.exists():
        stored = torch.load(cache_path, map_location="cpu", weights_only=True)
        if stored.get("fingerprint") == fingerprint:
            cache = stored["latents"]
    # by key: an episode listed twice (a root given twice to weight it) is encoded once
    todo = list({episode_key(ep): ep for ep in episodes if episode_key(ep) not in cache}.values())

    def save() -> None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(cache_path.name + ".tmp")
        torch.save({"fingerprint": fingerprint, "latents": cache}, tmp)
        tmp.replace(cache_path)

    for i, ep in enumerate(progress(todo) if progress and todo else todo, start=1):
        cache[episode_key(ep)] = encode_latents(model, cfg, ep, device)
        if i % save_every == 0 and i < len(todo):
            save()  # an interrupted pass keeps what it has encoded
    if todo:
        save()
    return {episode_key(ep): cache[episode_key(ep)] for ep in episodes}


# ---- windows -----------------------------------------------------------------------------------------
class WindowDataset:
    """Every window of every episode; `batch(indices)` gathers one training batch."""

    def __init__(self, episodes: list[TrainingEpisode], latents: dict, cfg: ModelConfig, normalizer: NormalizerSet,
                 skip_unlabelled: bool = False):
        """`skip_unlabelled`: leave out the windows of action-labelled episodes whose actions are not all
        labelled (a takeover episode's policy steps) instead of training the video half on them."""
        if not episodes:
            raise TrainingDataError("no usable episodes")
        self.cfg = cfg
        self.episodes = episodes
        self.latents = [latents[episode_key(ep)] for ep in episodes]
        self.actions, self.chunk_actions = [], []
        for ep in episodes:
            if ep.actions is None:
                self.actions.append(None)
            else:
                a = np.nan_to_num(normalizer.action.normalize(ep.actions)).astype(np.float32)
                self.actions.append(torch.from_numpy(a))
            self.chunk_actions.append({s: torch.from_numpy(normalizer.action.normalize(a).astype(np.float32))
                                       for s, a in (ep.chunk_actions or {}).items()})
        self.states = [{key: torch.from_numpy(normalizer.lowdim[key].normalize(ep.state[key]).astype(np.float32))
                        if key in ep.state else torch.zeros(ep.num_steps, dim) for key, dim in cfg.low_dim}
                       for ep in episodes]
        # (episode, start) with start in [-1, N-2]: the first window pads frame 0.
        self.index = np.array([(e, s) for e, ep in enumerate(episodes) for s in range(-1, ep.num_steps - 1)],
                              dtype=np.int64)
        # Per window: are all its actions labelled (they train the action half too)?
        self.labelled = np.concatenate([labelled_windows(ep, cfg.action_len) for ep in episodes])
        if skip_unlabelled:
            video_only = np.array([ep.actions is None and not ep.chunk_actions for ep in episodes])
            keep = self.labelled | video_only[self.index[:, 0]]
            self.index, self.labelled = self.index[keep], self.labelled[keep]
            if not len(self.index):
                raise TrainingDataError(f"no window of {cfg.action_len} actions is fully labelled: nothing is left "
                                        "to train on without the unlabelled windows")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_labelled_windows(self) -> int:
        return int(self.labelled.sum())

    def batch(self, indices: np.ndarray, generator: torch.Generator | None = None) -> dict:
        h, n_obs = self.cfg.action_len, self.cfg.n_obs_steps
        obs = {key: [] for key in (*self.cfg.cameras, *self.cfg.low_dim_keys)}
        mean, std, actions, mask = [], [], [], []
        for i in indices:
            e, s = self.index[i]
            ep = self.episodes[e]
            last = ep.num_steps - 1
            obs_idx = np.clip(np.arange(s + 2 - n_obs, s + 2), 0, last)
            act_idx = np.clip(np.arange(s + 1, s + 1 + h), 0, last)
            next_idx = np.clip(np.arange(s + 1 + h, s + 1 + h + n_obs), 0, last)
            for cam in self.cfg.cameras:
                obs[cam].append(torch.from_numpy(ep.frames[cam][obs_idx]))
            for key, x in self.states[e].items():
                obs[key].append(x[obs_idx])
            m, sd = self.latents[e]
            mean.append(m[next_idx])
            std.append(sd[next_idx])
            if s in self.chunk_actions[e]:
                actions.append(self.chunk_actions[e][s])
            elif self.actions[e] is None:
                actions.append(torch.zeros(h, self.cfg.action_dim))
            else:
                actions.append(self.actions[e][act_idx])
            mask.append(bool(self.labelled[i]))
        mean, std = torch.stack(mean), torch.stack(std)  # (B, T, V, C, h, w)
        noise = torch.randn(mean.shape, generator=generator)
        latents = (mean + std * noise).permute(0, 2, 3, 1, 4, 5)  # (B, V, C, T, h, w)
        return {
            "obs": {cam: torch.stack(v) for cam, v in obs.items()},
            "next_latents": latents.contiguous(),
            "action": torch.stack(actions),
            "action_mask": torch.tensor(mask),
        }


def labelled_windows(ep: TrainingEpisode, action_len: int) -> np.ndarray:
    """(N,) bool: window start s in [-1, N-2] has all its `action_len` actions (steps s+1..., the last
    step repeated past the end, unless the episode ends mid-task) labelled, or a served chunk
    (chunk-labelled rollouts)."""
    if ep.chunk_actions:  # `chunk_labels` keeps only chunks observed at a recorded step: starts -1 .. N-2
        out = np.zeros(ep.num_steps, dtype=bool)
        out[np.fromiter(ep.chunk_actions, dtype=np.int64) + 1] = True
        return out
    if ep.actions is None:
        return np.zeros(ep.num_steps, dtype=bool)
    finite = np.isfinite(ep.actions).all(axis=1)
    past_end = finite[-1:] & (not ep.ends_mid_task)
    padded = np.concatenate([finite, np.repeat(past_end, action_len)])
    return np.lib.stride_tricks.sliding_window_view(padded, action_len)[:ep.num_steps].all(axis=1)


def load_training_data(data_roots: list[str | Path], cfg: ModelConfig, video_roots: list[str | Path] = (),
                       progress=None, chunk_roots: list[str | Path] = ()) -> tuple[list[TrainingEpisode], NormalizerSet]:
    """Read every usable episode (frames resized to the model's input) and the normaliser statistics."""
    paths = ([(p, True, False) for p in find_episodes(list(data_roots))]
             + [(p, False, False) for p in find_episodes(list(video_roots))]
             + [(p, False, True) for p in find_episodes(list(chunk_roots))])
    if not paths:
        raise TrainingDataError(f"no usable episodes under {[str(r) for r in [*data_roots, *video_roots, *chunk_roots]]} "
                                "(finished, not discarded, not failed)")
    episodes = [read_episode(p, cfg, with_actions=a, chunk_labelled=c) for p, a, c in (progress(paths) if progress else paths)]
    return episodes, fit_normalizer(episodes, cfg)
