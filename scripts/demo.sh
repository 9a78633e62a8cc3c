#!/usr/bin/env bash
# The README's demo: everything the stack can do end to end on this machine, with no robot.
# Today: make a tiny UWM checkpoint, then time a 10-step DDIM policy chunk on the CPU.
# (The sim episode through the policy server lands with the control-loop issue.)
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
CKPT=runs/demo/tiny_ckpt
if [ ! -f "$CKPT/model.safetensors" ]; then
  uwm_robot init --preset tiny --out "$CKPT"
fi
uwm_robot bench --preset tiny --iters 10
