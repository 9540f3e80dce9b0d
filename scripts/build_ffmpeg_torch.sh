#!/usr/bin/env bash
# Build a minimal FFmpeg with the LibTorch back end of `dnn_processing`
# (--enable-libtorch, FFmpeg 7.0 or later), linked against the PyTorch of a Python
# environment, to run gencodec's TorchScript export inside FFmpeg itself.
# Debian's ffmpeg packages are not built with libtorch.
#
#   scripts/build_ffmpeg_torch.sh [PYTHON] [OUT_DIR]     (defaults: .venv/bin/python, build/ffmpeg-torch)
#
# The source is Debian's upstream tarball (ffmpeg_X.Y.Z.orig.tar.xz) of the newest
# ffmpeg >= 7 in $SUITE (default sid), found through the suite's InRelease, whose
# signature gpgv checks against the Debian archive keyring, then the SHA-256 of
# Sources.xz and of the tarball. The build keeps what the filter and the README's
# command lines need: rawvideo in and out on files and pipes ("-" is the fd protocol
# since FFmpeg 7.1), the format, scale, copy and dnn_processing filters, and MP4/MOV/
# Matroska with H.264 and HEVC in, for
#
#   ffmpeg -i in.mp4 -vf "format=rgb24,dnn_processing=...,format=yuv420p" \
#       -c:v libx265 -crf 28 -c:a copy out.mp4
#
# libx265 is linked when pkg-config finds it (Debian: libx265-dev, which `make
# system-deps` installs); without it the build is GPL-free and encodes rawvideo only.
# It writes OUT_DIR/ffmpeg and OUT_DIR/VERSION.
set -euo pipefail

PYTHON=${1:-.venv/bin/python}
OUT=$(realpath -m "${2:-build/ffmpeg-torch}")
SUITE=${SUITE:-sid}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
JOBS=${JOBS:-$(nproc)}

for tool in curl gpgv xz dpkg make g++; do
  command -v "$tool" >/dev/null || { echo "build_ffmpeg_torch: $tool is needed" >&2; exit 1; }
done
TORCH=$("$PYTHON" -c "import os, torch; print(os.path.dirname(torch.__file__))")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

fetch() { curl -fsSL --retry 3 -o "$2" "$1"; }
check() {  # check SHA256 FILE
  echo "$1  $2" | sha256sum -c --quiet - || { echo "build_ffmpeg_torch: bad checksum: $2" >&2; exit 1; }
}

fetch "$MIRROR/dists/$SUITE/InRelease" InRelease
gpgv --keyring "$KEYRING" --output Release InRelease 2>/dev/null \
  || { echo "build_ffmpeg_torch: InRelease of $SUITE: bad signature" >&2; exit 1; }
sources_sha=$(awk '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3 == "main/source/Sources.xz" {print $1}' Release)
fetch "$MIRROR/dists/$SUITE/main/source/Sources.xz" Sources.xz
check "$sources_sha" Sources.xz

# Every ffmpeg stanza as "version directory sha256 tarball"; keep the newest >= 7.
xz -dc Sources.xz | awk '
  /^Package: /            { pkg = $2; sha = ""; dir = ""; ver = ""; in256 = 0 }
  pkg != "ffmpeg"          { next }
  /^Version: /            { ver = $2 }
  /^Directory: /          { dir = $2 }
  /^Checksums-Sha256:/    { in256 = 1; next }
  /^[^ ]/                 { in256 = 0 }
  in256 && $3 ~ /\.orig\.tar\.xz$/ { sha = $1; tar = $3 }
  /^$/ && sha != ""       { print ver, dir, sha, tar; sha = "" }
  END { if (sha != "") print ver, dir, sha, tar }' > candidates
best=""
while read -r ver dir sha tar; do
  upstream=${ver#*:}; upstream=${upstream%%-*}
  dpkg --compare-versions "$upstream" ge 7 || continue
  if [ -z "$best" ] || dpkg --compare-versions "$ver" gt "${best%% *}"; then
    best="$ver $dir $sha $tar"
  fi
done < candidates
[ -n "$best" ] || { echo "build_ffmpeg_torch: no ffmpeg >= 7 in $SUITE" >&2; exit 1; }
read -r ver dir sha tar <<< "$best"
echo "build_ffmpeg_torch: ffmpeg $ver from $SUITE, torch at $TORCH"
fetch "$MIRROR/$dir/$tar" "$tar"
check "$sha" "$tar"
tar xf "$tar"
cd ffmpeg-*/

inc="-I$TORCH/include -I$TORCH/include/torch/csrc/api/include"
encoders=rawvideo
x265=()
if pkg-config --exists x265 2>/dev/null; then
  encoders=rawvideo,libx265
  x265=(--enable-gpl --enable-libx265)
else
  echo "build_ffmpeg_torch: no x265 (pkg-config x265; Debian: libx265-dev): building without libx265" >&2
fi
./configure --prefix="$OUT" --disable-everything --disable-doc --disable-ffplay \
  --disable-ffprobe --disable-autodetect --disable-x86asm --enable-libtorch "${x265[@]}" \
  --enable-filter=dnn_processing,format,scale,copy,null \
  --enable-demuxer=rawvideo,mov,matroska --enable-decoder=rawvideo,h264,hevc \
  --enable-parser=h264,hevc,aac --enable-encoder="$encoders" \
  --enable-muxer=rawvideo,mp4,mov,matroska --enable-protocol=file,pipe,fd \
  --extra-cflags="$inc" --extra-cxxflags="$inc" \
  --extra-ldflags="-L$TORCH/lib -Wl,-rpath,$TORCH/lib" > configure.log 2>&1 \
  || { tail -20 configure.log ffbuild/config.log >&2; exit 1; }
make -j"$JOBS" ffmpeg > make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
mkdir -p "$OUT"
install -m755 ffmpeg "$OUT/ffmpeg.tmp"
mv "$OUT/ffmpeg.tmp" "$OUT/ffmpeg"
echo "$ver" > "$OUT/VERSION"
echo "build_ffmpeg_torch: wrote $OUT/ffmpeg ($ver)"
