"""A client pointed at a running server is told when the server samples otherwise than its settings
ask for (noise scale and chunks per request are the server's options)."""

from __future__ import annotations

import dataclasses

from robot_client.runner import open_policy, sampling_mismatch
from robot_client.settings import DEFAULT_PATH, load_settings
from uwm_robot.local_server import LocalServer


def test_the_shipped_settings_sample_at_half_noise_and_at_full_noise_while_stalled():
    settings = load_settings(DEFAULT_PATH)
    assert settings.noise_scale == 0.5
    assert settings.control.stall_noise_scale == 1.0 and settings.control.stall_turn_deg == 10.0


def test_a_server_at_another_noise_scale_is_named_with_the_fix(tiny_checkpoint, caplog):
    settings = dataclasses.replace(load_settings(DEFAULT_PATH), noise_scale=0.5)
    with LocalServer(tiny_checkpoint, extra=["--noise-scale", "1"]) as srv:
        with open_policy(settings, srv.address, None, None) as (_, metadata):
            assert metadata["action_noise_scale"] == 1.0
        assert "restart it with `policy_server serve --noise-scale 0.5`" in caplog.text
        caplog.clear()
        with open_policy(dataclasses.replace(settings, noise_scale=1.0), srv.address, None, None):
            pass
        assert "policy server samples" not in caplog.text
    assert sampling_mismatch(settings, {}) is not None  # a server without the option samples at 1


def test_a_server_sampling_another_number_of_chunks_is_named():
    settings = dataclasses.replace(load_settings(DEFAULT_PATH), noise_scale=1.0)
    served = {"action_noise_scale": 1.0, "samples_per_chunk": 8}
    assert sampling_mismatch(settings, served) is None  # settings at 1 sample leave the server's choice alone
    warning = sampling_mismatch(dataclasses.replace(settings, samples=4), served)
    assert "`policy_server serve --samples 4`" in warning and "noise" not in warning
    both = sampling_mismatch(dataclasses.replace(settings, samples=4, noise_scale=0.5), served)
    assert "`policy_server serve --noise-scale 0.5 --samples 4`" in both
    coherent = dataclasses.replace(settings, control=dataclasses.replace(settings.control, coherent=True))
    assert sampling_mismatch(coherent, served) is None
    assert "--coherent picks among several" in sampling_mismatch(coherent, {**served, "samples_per_chunk": 1})
