# The README's two commands, `make demo` and `make test`, set everything up on a
# fresh machine: a virtual environment, the CPU build of PyTorch (first, or pip pulls
# several GB of CUDA wheels), the package with its native core and extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.gencodec-installed
DEPS   := pyproject.toml CMakeLists.txt $(shell find native -type f)

.PHONY: demo test install system-deps ffmpeg-torch clean

demo: install
	$(VENV)/bin/gencodec demo --out demo-out --force

test: install system-deps ffmpeg-torch
	$(PY) -m pytest -q

# Debian's ffmpeg drives the rawvideo pipe tests; installed when missing and we are
# root on Debian, otherwise those tests skip with a message.
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else echo "note: ffmpeg not found and cannot be installed here; pipe tests will skip"; fi; }
	@pkg-config --exists x265 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libx265-dev >/dev/null; \
	  else echo "note: libx265-dev missing; build/ffmpeg-torch will have no libx265"; fi; }

# An FFmpeg with the LibTorch back end of dnn_processing, to run the TorchScript export
# inside FFmpeg (tests/filters/test_dnn_processing.py). Built from Debian's signed
# source; when that fails (no network), those tests skip with a message.
FFMPEG_TORCH := build/ffmpeg-torch/ffmpeg

ffmpeg-torch: $(STAMP)
	@[ -x $(FFMPEG_TORCH) ] && [ $(FFMPEG_TORCH) -nt $(STAMP) ] && \
	  [ $(FFMPEG_TORCH) -nt scripts/build_ffmpeg_torch.sh ] || \
	  scripts/build_ffmpeg_torch.sh $(PY) $(dir $(FFMPEG_TORCH)) || \
	  echo "note: FFmpeg with libtorch could not be built; the dnn_processing tests will skip"

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) $(DEPS)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet $(TORCH) -e ".[all]"
	# piq's metrics need only torch; its torchvision dependency has no CPU build
	# that matches this torch, so piq comes without its dependencies.
	$(PIP) install --quiet --no-deps piq==0.8.0
	touch $@

clean:
	rm -rf build demo-out .pytest_cache
