"""`UWMPolicy`: a loaded UWM checkpoint as an in-process policy and world model.

This is the engine behind `policy_server` (and what tests compare the server against):

- `infer(images, seed)`: p(a | o) -> the action chunk, un-normalised with the checkpoint's
  normaliser and decoded by the action codec to DROID's 7-d `[cartesian_velocity, gripper]`;
- `infer_batch(requests)`: several independent requests in one denoising pass, each result what
  `infer` gives for that request alone, up to float rounding (see `UWMSampler.policy_batch`);
- with `samples=N`, `infer` and `infer_batch` draw N chunks per request in the same pass and
  return their medoid (the chunk nearest the others), or, given a `guide` (the previous chunk's
  plan for some rows), the chunk nearest the guide on those rows: bidirectional decoding's backward
  coherence (Liu et al. 2024), which keeps a receding-horizon policy on one mode of its
  action distribution instead of switching between modes at every chunk;
- with `noise_scale=s` < 1, every chunk starts its DDIM trajectory from the drawn noise times s
  (a sampling temperature, see `uwm_robot.sampling`): 1 is the official sampler;
- `predict_future(images, actions_raw, seed)`: p(o' | o, a) -> predicted frames per camera;
- `imagine(images, seed)`: p(o' | o) -> predicted frames;
- `inverse(images, goal_images, seed)`: p(a | o, o') -> an action chunk as `infer`.

Images are uint8 `(B, n_obs, H, W, 3)` per camera, `H, W = config.image_shape`; a model with low-dim
inputs (`config.low_dim`) also takes its state keys in the same mapping, un-normalised float
`(B, n_obs, D)` (the checkpoint's normaliser scales them). `raw` actions are
the model's normalised 10-d actions (what `predict_future` takes back). A seed fixes every random
draw; `seed=None` draws a fresh seed, which each result reports so a sample can be replayed.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .action_codec import codec_for
from .checkpoint import LoadedCheckpoint, load_checkpoint
from .config import ModelConfig
from .protocol import is_noise_scale, sampling_problem
from .sampling import UWMSampler

DEFAULT_EXECUTED_HORIZON = 8  # actions executed per chunk before replanning (of 16)
DEFAULT_CONTROL_RATE_HZ = 15.0  # DROID's control rate

# What each action dimension means, per action space (the protocol's metadata carries it).
DROID_ACTION_NAMES = ("vx", "vy", "vz", "wx", "wy", "wz", "gripper")
DROID_ACTION_UNITS = {
    "space": "droid_cartesian_velocity",
    "linear": "normalised velocity in [-1, 1]; x 0.075 m per 1/15 s step (DROID max_lin_vel)",
    "angular": "normalised intrinsic-XYZ Euler-rate triple in [-1, 1]; x 0.15 rad per step (DROID max_rot_vel)",
    "gripper": "absolute gripper position in [0, 1] (1 = closed)",
    "frame": "robot base frame, end effector panda_link8",
}
RAW_ACTION_NAMES_DROID = ("vx", "vy", "vz", "r00", "r01", "r02", "r10", "r11", "r12", "gripper")

Images = Mapping[str, Any]  # camera -> uint8 (B, n_obs, H, W, 3); state key -> float (B, n_obs, D)


def new_seed() -> int:
    return secrets.randbits(63)


class UWMPolicy:
    """A UWM checkpoint with its normaliser and action codec; every method is thread-compatible
    (one caller at a time: the server runs it on one worker thread)."""

    def __init__(self, loaded: LoadedCheckpoint, fast: bool = True, samples: int = 1, noise_scale: float = 1.0,
                 **fast_options: Any):
        problem = sampling_problem(samples, noise_scale)
        if problem:
            raise ValueError(problem)
        self.loaded = loaded
        self.samples = int(samples)
        self.noise_scale = float(noise_scale)
        self.config: ModelConfig = loaded.config
        self.model = loaded.model
        self.normalizer = loaded.normalizer
        self.codec = codec_for(self.config.action_space, self.config.action_dim)
        missing = [k for k in self.config.low_dim_keys if k not in self.normalizer.lowdim]
        if missing:
            raise ValueError(f"the checkpoint's normaliser has no statistics for its low-dim input(s) {missing}")
        self.fast = fast
        self.sampler = UWMSampler(self.model, fast=fast, **fast_options)
        self.device = self.model.device
        self._metadata = self._build_metadata()

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        fast: bool = True,
        dtype: torch.dtype | None = None,
        config_path: str | Path | None = None,
        verify: bool = False,
        samples: int = 1,
        noise_scale: float = 1.0,
        **fast_options: Any,
    ) -> "UWMPolicy":
        """Our checkpoint directory or an official `models.pt` (see `load_checkpoint`)."""
        loaded = load_checkpoint(path, device=device, dtype=dtype, config_path=config_path, verify=verify)
        return cls(loaded, fast=fast, samples=samples, noise_scale=noise_scale, **fast_options)

    # ---- description --------------------------------------------------------------------------
    def _build_metadata(self) -> dict[str, Any]:
        cfg, meta = self.config, self.loaded.meta
        droid = cfg.action_space == "droid"
        hw = [int(x) for x in cfg.image_shape]
        return {
            "checkpoint_id": str(meta.get("checkpoint_id", "")),
            "checkpoint_hash": str(meta.get("checkpoint_hash", "")),
            "checkpoint_source": str(meta.get("source", "")),
            "normalizer_hash": self.normalizer.content_hash(),
            "cameras": list(cfg.cameras),
            "image_shape": hw,
            "image_shapes": {c: hw for c in cfg.cameras},
            "predicted_frame_shape": [int(x) for x in cfg.crop_shape],
            "n_obs_steps": int(cfg.n_obs_steps),
            # Low-dim robot state the model conditions on (InferRequest.state), key -> (n_obs, D).
            "state_shapes": {k: [int(cfg.n_obs_steps), int(d)] for k, d in cfg.low_dim},
            "action_len": int(cfg.action_len),
            "action_dim": int(self.codec.robot_dim),
            "raw_action_dim": int(cfg.action_dim),
            "action_space": "droid_cartesian_velocity" if droid else "raw",
            "action_names": list(DROID_ACTION_NAMES) if droid else [f"a{i}" for i in range(cfg.action_dim)],
            "raw_action_names": list(RAW_ACTION_NAMES_DROID) if droid else [f"a{i}" for i in range(cfg.action_dim)],
            "action_units": dict(DROID_ACTION_UNITS) if droid else {"space": "raw", "note": "the training data's own units"},
            "raw_actions": "normalised model actions in [-1, 1] (checkpoint normaliser)",
            "executed_horizon": DEFAULT_EXECUTED_HORIZON,
            "control_rate_hz": DEFAULT_CONTROL_RATE_HZ,
            "dt": 1.0 / DEFAULT_CONTROL_RATE_HZ,
            "ddim_steps": int(cfg.num_inference_steps),
            "num_train_steps": int(cfg.num_train_steps),
            "device": str(self.device),
            "fast_path": bool(self.fast),
            "samples_per_chunk": self.samples,  # >1: the medoid of that many samples (or the one nearest a guide) is returned
            "action_noise_scale": self.noise_scale,  # the starting action noise's factor (1: the official sampler)
        }

    def metadata(self) -> dict[str, Any]:
        """Protocol-independent description of what this policy takes and returns."""
        return dict(self._metadata)

    # ---- action post-processing --------------------------------------------------------------
    def decode_actions(self, raw: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised model actions (..., D) -> (robot actions (..., 7 or D), raw), both float32."""
        raw_np = raw.detach().float().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw, np.float32)
        unnorm = self.normalizer.action.unnormalize(raw_np)
        robot = self.codec.decode(unnorm)
        return np.ascontiguousarray(robot, dtype=np.float32), np.ascontiguousarray(raw_np, dtype=np.float32)

    def _result(self, raw: torch.Tensor, seed: int) -> dict[str, Any]:
        actions, raw_np = self.decode_actions(raw)
        return {"actions": actions, "raw": raw_np, "seed": seed}

    @staticmethod
    def _seed(seed: int | None) -> int:
        return new_seed() if seed is None else int(seed)

    def _obs(self, images: Images) -> dict[str, Any]:
        """The model's inputs: frames as given, low-dim state scaled by the checkpoint's normaliser."""
        self.config.check_state(images)
        obs = dict(images)
        for key in self.config.low_dim_keys:
            obs[key] = self.normalizer.lowdim[key].normalize(np.asarray(obs[key], dtype=np.float64)).astype(np.float32)
        return obs

    # ---- the modes ----------------------------------------------------------------------------
    def infer(self, images: Images, seed: int | None = None, prefix: Any = None, prefix_mask: Any = None,
              guide: Any = None, guide_mask: Any = None, noise_scale: float | None = None) -> dict[str, Any]:
        """p(a | o): `{"actions": (B, L, 7) float32 DROID, "raw": (B, L, 10) float32 normalised, "seed"}`.

        `prefix` (L, 10) normalised model actions with a bool `prefix_mask` (L,): inpaint those
        rows (real-time chunking; see `uwm_robot.sampling`): the result's masked `raw` rows equal them.
        `guide` (L, 10) with `guide_mask` (L,): with `samples` > 1, the candidate nearest the guide
        on the masked rows is returned instead of the medoid (ignored with one sample).
        `noise_scale` in [0, 1]: this request's factor on the starting noise (None: the session's).
        """
        request = self._request(images, seed, prefix, prefix_mask, noise_scale)
        return self._result(self._consensus(self.sampler.policy(*request), guide, guide_mask), request[1])

    def _request(self, images: Images, seed: int | None, prefix: Any = None, prefix_mask: Any = None,
                 noise_scale: float | None = None) -> tuple:
        """The sampler's arguments for one request: (model inputs, seed, prefix, mask, samples, noise scale).
        One pass draws all `samples` candidates of each batch row (row-major, from one encoding of the row)."""
        if noise_scale is None:
            noise_scale = self.noise_scale
        elif not is_noise_scale(noise_scale):
            raise ValueError(f"noise_scale must be in [0, 1] (the factor on the chunk's starting noise), got {noise_scale}")
        return self._obs(images), self._seed(seed), prefix, prefix_mask, self.samples, float(noise_scale)

    def _consensus(self, raw: torch.Tensor, guide: Any = None, guide_mask: Any = None) -> torch.Tensor:
        """(B * samples, L, D) candidates -> (B, L, D), one candidate per request, never an average
        of two modes (which could steer between them). Without a guide: the medoid, the candidate
        with the least summed distance to the others (a sample from the densest mode). With a guide
        (L, D) and mask (L,) (or per request (B, L, D) and (B, L)): the candidate with the least
        squared distance to the guide on the masked rows; no masked row falls back to the medoid."""
        if self.samples == 1:
            return raw
        cands = raw.reshape(-1, self.samples, *raw.shape[-2:])
        flat = cands.float().flatten(2)
        score = torch.cdist(flat, flat).sum(-1)  # (B, samples)
        if guide is not None and guide_mask is not None:
            B, L, D = cands.shape[0], *raw.shape[-2:]
            g = torch.as_tensor(np.asarray(guide, np.float32), device=raw.device).expand(B, L, D)
            m = torch.as_tensor(np.asarray(guide_mask, bool), device=raw.device).expand(B, L)
            dist = ((cands.float() - g[:, None]) ** 2 * m[:, None, :, None]).sum((-1, -2))
            score = torch.where(m.any(-1, keepdim=True), dist, score)
        return cands[torch.arange(cands.shape[0]), score.argmin(-1)]

    def infer_batch(self, requests: Sequence[Mapping[str, Any] | tuple]) -> list[dict[str, Any]]:
        """Requests `{"images", "seed", "prefix", "prefix_mask", "guide", "guide_mask", "noise_scale"}` (or
        `(images, seed)`; only images required) stacked along B in one pass.

        Result i is `infer(**requests[i])` up to float rounding (each request keeps its own noise
        generator, encoding, condition projection and prefix; only the DiT trunk is shared).
        """
        reqs = [self._request(r["images"], r.get("seed"), r.get("prefix"), r.get("prefix_mask"), r.get("noise_scale"))
                if isinstance(r, Mapping)
                else self._request(*r) for r in requests]
        guides = [(r.get("guide"), r.get("guide_mask")) if isinstance(r, Mapping) else (None, None) for r in requests]
        outs = self.sampler.policy_batch(reqs)
        return [self._result(self._consensus(raw, *g), r[1]) for raw, r, g in zip(outs, reqs, guides)]

    def predict_future(self, images: Images, actions_raw: Any, seed: int | None = None) -> dict[str, Any]:
        """p(o' | o, a): normalised model actions (B, L, D) -> `{"frames": {cam: uint8 (B, T, h, w, 3)}, "seed"}`."""
        seed = self._seed(seed)
        action = torch.from_numpy(np.array(actions_raw, dtype=np.float32))  # a copy: the input may be read-only
        latents = self.sampler.forward_dynamics(self._obs(images), action, seed=seed)
        return {"frames": self.sampler.decode(latents), "seed": seed}

    def imagine(self, images: Images, seed: int | None = None) -> dict[str, Any]:
        """p(o' | o): `{"frames": {cam: uint8 (B, T, h, w, 3)}, "seed"}` with actions marginalised out."""
        seed = self._seed(seed)
        return {"frames": self.sampler.decode(self.sampler.video_prediction(self._obs(images), seed=seed)), "seed": seed}

    def inverse(self, images: Images, goal_images: Images, seed: int | None = None) -> dict[str, Any]:
        """p(a | o, o'): the chunk leading to the goal frames, as `infer` returns it."""
        seed = self._seed(seed)
        return self._result(self.sampler.inverse_dynamics(self._obs(images), goal_images, seed=seed), seed)

    # ---- housekeeping -------------------------------------------------------------------------
    def blank_images(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Black frames (and the normaliser's mid-range state) of the model's input shapes."""
        h, w, n = *self.config.image_shape, self.config.n_obs_steps
        blank = {c: np.zeros((batch, n, h, w, 3), np.uint8) for c in self.config.cameras}
        for key, dim in self.config.low_dim:
            blank[key] = np.broadcast_to(self.normalizer.lowdim[key].offset, (batch, n, dim)).astype(np.float32)
        return blank

    def warmup(self, batch_sizes: Sequence[int] = (1,), world_model: bool = False) -> float:
        """Run the policy once per batch size (and the world-model modes if asked); returns seconds."""
        t0 = time.perf_counter()
        for b in batch_sizes:
            if b == 1:
                self.infer(self.blank_images(1), seed=0)
            else:
                self.infer_batch([(self.blank_images(1), i) for i in range(b)])
        if world_model:
            img = self.blank_images(1)
            raw = np.zeros((1, self.config.action_len, self.config.action_dim), np.float32)
            self.predict_future(img, raw, seed=0)
            self.imagine(img, seed=0)
            self.inverse(img, img, seed=0)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0


__all__ = ["DEFAULT_CONTROL_RATE_HZ", "DEFAULT_EXECUTED_HORIZON", "UWMPolicy", "new_seed"]
