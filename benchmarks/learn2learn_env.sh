#!/usr/bin/env bash
# Builds benchmarks/.venv-learn2learn: learn2learn 0.2.0 on PyTorch 2.13.0 (CPU), for the
# side-by-side benchmarks. Changes to upstream, all forced by this machine:
#  * torch==2.13.0 exactly: this machine holds that CPU wheel; plain `torch` pulls a CUDA build.
#  * learn2learn's sdist ships Cython-generated C that does not compile on Python 3.11: the C
#    is regenerated from its own .pyx files with Cython 0.29.37 and installed with --no-deps.
#  * torchvision is not installed (the wheels reachable here need a CUDA torch); the benchmark
#    child replaces it by an empty stub module. Only learn2learn's vision datasets use it; the
#    MAML code (clone_module / update_module / MAML.adapt) does not.
#  * gsutil (dataset downloads only) is left out.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venv-learn2learn"
PYTHON="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, Cython" 2>/dev/null \
    && [ -f "$VENV/.learn2learn-installed" ]; then
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet torch==2.13.0 numpy "cython==0.29.37" scipy requests tqdm gym qpth pillow
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/pip" download --quiet --no-deps --no-binary :all: learn2learn==0.2.0 -d "$WORK"
tar xzf "$WORK"/learn2learn-0.2.0.tar.gz -C "$WORK"
(
  cd "$WORK/learn2learn-0.2.0"
  "$VENV/bin/cython" -3 learn2learn/data/meta_dataset.pyx learn2learn/data/task_dataset.pyx \
    learn2learn/data/transforms.pyx
  "$VENV/bin/pip" install --quiet --no-deps --no-build-isolation .
)
touch "$VENV/.learn2learn-installed"
