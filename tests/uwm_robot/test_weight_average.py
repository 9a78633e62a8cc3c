"""`uwm_robot average`: weighted weight averages of checkpoints of one config and normaliser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from uwm_robot.checkpoint import CheckpointError, init_checkpoint, load_checkpoint, save_checkpoint, write_checkpoint
from uwm_robot.cli import main
from uwm_robot.normalizer import LinearNormalizer, NormalizerSet
from uwm_robot.weight_average import average_checkpoints


@pytest.fixture(scope="module")
def two_inits(tmp_path_factory):
    root = tmp_path_factory.mktemp("avg")
    return init_checkpoint("tiny", root / "a", seed=1), init_checkpoint("tiny", root / "b", seed=2)


def test_the_average_is_the_weighted_sum_of_every_tensor(two_inits, tmp_path):
    a, b = two_inits
    out = average_checkpoints([a, b], tmp_path / "soup", weights=[1, 3])  # scaled to 0.25 / 0.75
    wa, wb, avg = (load_file(str(p / "model.safetensors")) for p in (a, b, out))
    assert avg.keys() == wa.keys()
    differing = 0
    for k in wa:
        torch.testing.assert_close(avg[k], 0.25 * wa[k] + 0.75 * wb[k])
        differing += not torch.equal(wa[k], wb[k])
    assert differing > 10  # two seeds: the average really mixes two sets of weights

    loaded = load_checkpoint(out, verify=True)  # a complete checkpoint that builds the model
    assert loaded.normalizer.content_hash() == load_checkpoint(a).normalizer.content_hash()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "uwm_robot average"
    assert [s["weight"] for s in meta["averaged"]] == [0.25, 0.75]
    assert [s["source"] for s in meta["averaged"]] == ["init:tiny", "init:tiny"]  # the inputs' provenance
    assert [s["hash"] for s in meta["averaged"]] == [json.loads((p / "meta.json").read_text())["checkpoint_hash"]
                                                    for p in (a, b)]


def test_equal_weights_by_default_and_fp16(two_inits, tmp_path):
    a, b = two_inits
    out = average_checkpoints([a, b], tmp_path / "half", fp16=True)
    wa, wb, avg = (load_file(str(p / "model.safetensors")) for p in (a, b, out))
    k = next(k for k in wa if not torch.equal(wa[k], wb[k]))
    assert avg[k].dtype == torch.float16
    torch.testing.assert_close(avg[k].float(), (0.5 * wa[k] + 0.5 * wb[k]).half().float())


def test_a_different_normaliser_is_refused(two_inits, tmp_path):
    a, _ = two_inits
    loaded = load_checkpoint(a)
    other = NormalizerSet(LinearNormalizer.from_range(-2 * np.ones(10), 2 * np.ones(10)), {})
    b = save_checkpoint(tmp_path / "renormalised", loaded.model, loaded.config, other)
    with pytest.raises(CheckpointError, match="normaliser differs"):
        average_checkpoints([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_different_architecture_is_refused(two_inits, tmp_path):
    a, _ = two_inits
    b = init_checkpoint("tiny_lowres", tmp_path / "lowres", seed=1)
    with pytest.raises(CheckpointError, match="model config differs"):
        average_checkpoints([a, b], tmp_path / "out")


def test_weights_that_do_not_fit_the_model_are_refused(two_inits, tmp_path):
    a, _ = two_inits
    loaded = load_checkpoint(a)
    state = {k: v for k, v in loaded.model.state_dict().items() if not k.endswith("head.linear.bias")}
    b = write_checkpoint(tmp_path / "damaged", state, loaded.config, loaded.normalizer)
    with pytest.raises(CheckpointError, match="does not fit the model: 1 missing key"):
        average_checkpoints([a, b], tmp_path / "out")


@pytest.mark.parametrize("paths, weights, message", [
    (1, None, "at least 2 checkpoints"),
    (2, [1.0], "2 checkpoints: give one weight per checkpoint"),
    (2, [1.0, -1.0], "weights must be >= 0"),
    (2, [0.0, 0.0], "positive sum"),
])
def test_bad_arguments(two_inits, tmp_path, paths, weights, message):
    with pytest.raises(CheckpointError, match=message):
        average_checkpoints(list(two_inits)[:paths], tmp_path / "out", weights=weights)


def test_cli(two_inits, tmp_path, capsys):
    a, b = two_inits
    assert main(["average", str(a), str(b), "--weights", "0.5", "0.5", "--out", str(tmp_path / "soup")]) == 0
    assert "averaged 2 checkpoints" in capsys.readouterr().out
    assert main(["average", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uwm_robot average: error:") and len(err.strip().splitlines()) == 1
