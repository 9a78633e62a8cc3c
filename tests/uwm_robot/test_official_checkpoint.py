"""Reading official `models.pt` files through the allow-listed unpickler."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from uwm_robot.checkpoint import CheckpointError, load_checkpoint
from uwm_robot.normalizer import LinearNormalizer
from uwm_robot.official_checkpoint import RefusedGlobalError, read_official, safe_loads


# ---- the official fixture (shared/uwm_official/tiny_small) ----------------------------------
@pytest.fixture(scope="module")
def tiny_small(official_dir):
    return official_dir / "tiny_small"


@pytest.fixture(scope="module")
def official(tiny_small):
    return read_official(tiny_small / "models.pt")


def test_normalizers_equal_reference_json(official, tiny_small):
    ref = json.loads((tiny_small / "reference.json").read_text())["checkpoint"]
    a = official.action_normalizer
    assert isinstance(a, LinearNormalizer)
    assert a.scale.tolist() == ref["action_normalizer"]["scale"]  # exact: float32 values read as float64
    assert a.offset.tolist() == ref["action_normalizer"]["offset"]
    np.testing.assert_allclose(a.unnormalize(-np.ones(10)), ref["action_normalizer"]["min"], atol=1e-6)
    np.testing.assert_allclose(a.unnormalize(np.ones(10)), ref["action_normalizer"]["max"], atol=1e-6)
    assert set(official.lowdim_normalizers) == set(ref["lowdim_normalizer"])
    for key, stats in ref["lowdim_normalizer"].items():
        assert official.lowdim_normalizers[key].scale.tolist() == stats["scale"]
        assert official.lowdim_normalizers[key].offset.tolist() == stats["offset"]
    assert official.step == 0


def test_state_dict_matches_key_listing(official, tiny_small):
    rows = [r.split("\t") for r in (tiny_small / "state_dict_keys.tsv").read_text().splitlines()[1:]]
    expected = {name: [int(s) for s in shape.strip("[]").split(",")] for name, shape, _ in rows}
    assert {k: list(v.shape) for k, v in official.state_dict.items()} == expected
    assert all(v.dtype == torch.float32 for v in official.state_dict.values())


def test_omegaconf_optimizer_config_becomes_plain_data(official):
    group = official.other["optimizer"]["param_groups"][0]
    assert group["betas"] == [0.9, 0.999] and type(group["betas"]) is list


def test_strict_load_into_our_model(tiny_small, official):
    loaded = load_checkpoint(tiny_small / "models.pt")
    sd = loaded.model.state_dict()
    assert sd.keys() == official.state_dict.keys()
    assert all(torch.equal(sd[k], v) for k, v in official.state_dict.items())
    cfg = loaded.config
    assert cfg.vae.block_out_channels == (32, 64, 128, 128)  # read off the weights
    assert (cfg.embed_dim, cfg.depth, cfg.num_registers, cfg.crop_shape) == (128, 2, 2, (96, 96))
    assert loaded.normalizer.action == official.action_normalizer
    assert loaded.meta["step"] == 0 and len(loaded.meta["checkpoint_hash"]) == 64
    assert not loaded.model.training


def test_missing_config_is_reported(tiny_small, tmp_path):
    lonely = tmp_path / "models.pt"
    os.symlink(tiny_small / "models.pt", lonely)
    with pytest.raises(CheckpointError, match="no config.yaml or .hydra/config.yaml"):
        load_checkpoint(lonely)


def test_truncated_official_file(tiny_small, tmp_path):
    data = (tiny_small / "models.pt").read_bytes()
    cut = tmp_path / "models.pt"
    cut.write_bytes(data[: len(data) // 2])
    shutil.copy(tiny_small / "config.yaml", tmp_path / "config.yaml")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(cut)


# ---- self-made files (no fixture needed) -----------------------------------------------------
class Exploit:
    """Pickles as a call to `target(*args)`; nothing is called when saving."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args


@pytest.mark.parametrize(
    "target, args, named",
    [
        (os.system, "touch {marker}", "posix.system" if os.name == "posix" else "nt.system"),
        (eval, "open({marker!r}, 'w')", "builtins.eval"),
        (subprocess.Popen, ["touch", "{marker}"], "subprocess.Popen"),
    ],
)
def test_foreign_classes_are_refused_and_nothing_runs(tmp_path, target, args, named):
    marker = tmp_path / "pwned"
    arg = [a.format(marker=str(marker)) for a in args] if isinstance(args, list) else args.format(marker=str(marker))
    payload = {"model": {"w": torch.zeros(2)}, "action_normalizer": Exploit(target, arg), "step": 1}
    path = tmp_path / "models.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")) as info:
        read_official(path)
    assert "not on the allow-list" in str(info.value)
    assert not marker.exists()
    # The same allow-list guards plain pickles.
    with pytest.raises(RefusedGlobalError, match=named.replace(".", r"\.")):
        safe_loads(pickle.dumps(Exploit(target, arg), protocol=2))
    assert not marker.exists()


def test_getattr_gadget_is_refused():
    with pytest.raises(RefusedGlobalError, match=r"builtins\.getattr"):
        safe_loads(pickle.dumps(Exploit(getattr, "text", "upper")))


def test_only_latin1_codec_is_allowed():
    import _codecs

    with pytest.raises(RefusedGlobalError, match="latin1"):
        safe_loads(pickle.dumps(Exploit(_codecs.encode, "x", "rot13"), protocol=2))


def test_official_classes_map_to_ours(tmp_path, monkeypatch):
    """A models.pt naming the official normaliser classes and omegaconf lists loads without either."""
    omegaconf = pytest.importorskip("omegaconf")

    # Stand-ins under the official module path, only for torch.save; removed before loading.
    mod = types.ModuleType("datasets.utils.normalizer")

    class LinearNormalizer_:  # noqa: N801 - renamed below to the official name
        def __init__(self, scale, offset):
            self.scale, self.offset = scale, offset

    class NestedDictLinearNormalizer(dict):
        pass

    LinearNormalizer_.__name__ = LinearNormalizer_.__qualname__ = "LinearNormalizer"
    NestedDictLinearNormalizer.__qualname__ = "NestedDictLinearNormalizer"
    LinearNormalizer_.__module__ = NestedDictLinearNormalizer.__module__ = mod.__name__
    mod.LinearNormalizer, mod.NestedDictLinearNormalizer = LinearNormalizer_, NestedDictLinearNormalizer
    for name in ("datasets", "datasets.utils", "datasets.utils.normalizer"):
        monkeypatch.setitem(sys.modules, name, mod if name.endswith("normalizer") else types.ModuleType(name))

    low = NestedDictLinearNormalizer()
    low["gripper_position"] = LinearNormalizer_(np.array([0.5], np.float32), np.array([0.5], np.float32))
    opt_cfg = omegaconf.OmegaConf.create({"lr": 1e-4, "betas": [0.9, 0.999]})
    payload = {
        "model": {"layer.weight": torch.arange(6.0).reshape(2, 3)},
        "optimizer": {"state": {}, "param_groups": [{"betas": opt_cfg.betas, "params": [0]}]},
        "action_normalizer": LinearNormalizer_(np.array([2.0, 0.25], np.float32), np.array([-1.0, 0.5], np.float32)),
        "lowdim_normalizer": low,
        "step": 1234,
    }
    path = tmp_path / "models.pt"
    torch.save(payload, path)
    for name in ("datasets", "datasets.utils", "datasets.utils.normalizer"):
        monkeypatch.delitem(sys.modules, name)

    got = read_official(path)
    assert got.step == 1234
    assert torch.equal(got.state_dict["layer.weight"], torch.arange(6.0).reshape(2, 3))
    assert got.action_normalizer == LinearNormalizer([2.0, 0.25], [-1.0, 0.5])
    assert got.lowdim_normalizers == {"gripper_position": LinearNormalizer([0.5], [0.5])}
    assert got.other["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]
    assert got.normalizers(2).action == got.action_normalizer
    with pytest.raises(CheckpointError, match="action_dim is 10"):
        got.normalizers(10)


def test_libero_style_checkpoint_without_normalizer(tmp_path):
    path = tmp_path / "models.pt"
    torch.save({"model": {"w": torch.ones(1)}, "action_normalizer": None, "lowdim_normalizer": None, "step": 5}, path)
    got = read_official(path)
    assert got.action_normalizer is None and got.lowdim_normalizers == {}
    assert got.normalizers(7).action.to_dict() == {"type": "identity", "dim": 7}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a zip at all"), "not a torch zip checkpoint"),
        (lambda p: torch.save({"weights": {}}, p), r"expected the official dict with a 'model' entry, found \['weights'\]"),
        (lambda p: torch.save({"model": {"w": 3}}, p), "non-tensor entries"),
        (lambda p: None, "no such file"),
    ],
)
def test_malformed_files_are_named(tmp_path, make, message):
    path = tmp_path / "models.pt"
    make(path)
    with pytest.raises(CheckpointError, match=message):
        read_official(path)


def test_truncated_self_made_file(tmp_path):
    path = tmp_path / "models.pt"
    torch.save({"model": {"w": torch.randn(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[:-200])  # loses the zip directory
    with pytest.raises(CheckpointError, match="truncated"):
        read_official(path)
    # Central directory intact, a record damaged: torch's own error, wrapped.
    corrupt = bytearray(data)
    start = data.index(b"data.pkl") + 20
    corrupt[start : start + 40] = b"\xff" * 40
    path.write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="cannot read the torch checkpoint"):
        read_official(path)
