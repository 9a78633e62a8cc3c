# The two set-up commands of the README. Both install what is missing first.
export MUJOCO_GL ?= egl

.PHONY: install demo test
install:
	bash scripts/install.sh

demo: install
	bash scripts/demo.sh

test: install
	python3 -m pytest -q
