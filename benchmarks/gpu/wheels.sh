#!/usr/bin/env bash
# Wheels the GPU machine lacks (its image has Python 3.12 with torch, transformers, timm, peft,
# pillow, scipy, pandas, pyarrow, matplotlib, pytest): fetched here into .whl/ (git-ignored
# through .git/info/exclude), carried with `carry: [".whl"]`. imagecodecs (26 MB) is left out to
# stay under the 64 MiB the working tree may take: the GPU runs decode PNGs with PIL.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl \
  diffusers==0.42.1 hydra-core==1.3.8 omegaconf==2.3.1 open-clip-torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
# omegaconf's parser runtime is published as an sdist only: build its (pure Python) wheel here.
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
du -sh .whl && ls .whl
