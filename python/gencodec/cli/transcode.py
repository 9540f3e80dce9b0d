"""``gencodec transcode``: video -> preprocessing filter -> stock encoder, with PyAV."""

from __future__ import annotations

import sys

from gencodec.cli.options import add_force_argument
from gencodec.filters.cli_options import add_model_argument, add_runner_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "transcode", help="preprocess a video and encode it with a stock encoder",
        description="Decode IN, run the preprocessing model on every frame (pts, size, "
                    "colour matrix, range, primaries and transfer, rotation, pixel aspect "
                    "ratio and field order kept), encode with a stock encoder (libx265 by "
                    "default) and copy the audio and subtitle streams unchanged (with "
                    "their language, title and default/forced flags) and, into .mkv, "
                    "the attachments (fonts). The output container must carry every "
                    "copied codec: .mkv takes SubRip and ASS subtitles, .mp4 only "
                    "mov_text. A damaged or truncated input is coded as far as it decodes, "
                    "with a warning that counts the frames lost. An ICC profile (PNG, "
                    "JPEG input) is carried as colour tags where it names sRGB or Display "
                    "P3. --model none encodes without preprocessing (plain x265). HEVC "
                    "in .mp4/.mov is tagged hvc1, as Apple's players want (--tag).",
        epilog="examples: gencodec transcode in.mp4 out.mp4 --preprocess MODEL_DIR "
               "-c:v libx265 --crf 28 --x265-params aq-mode=3; "
               "gencodec transcode in.mp4 plain.mp4 --model none --crf 28")
    p.add_argument("input", help="input video")
    p.add_argument("output", help="output file (container from the extension: .mp4, .mkv, ...)")
    add_model_argument(p, "--preprocess", allow_none=True)
    p.add_argument("-c:v", "--vcodec", dest="vcodec", default="libx265",
                   help="video encoder (default: libx265)")
    p.add_argument("--crf", type=float, default=28,
                   help="constant rate factor: 0..51 for libx264/libx265, lower = better "
                        "quality and more bits (default: 28); encoders without CRF ignore it")
    p.add_argument("--preset", help="encoder preset, ultrafast .. veryslow for x264/x265 "
                                    "(default: the encoder's own, medium)")
    p.add_argument("--x265-params", help="extra x265 parameters, KEY=VALUE:KEY=VALUE "
                                         "(an unknown key or a bad value is refused)")
    p.add_argument("--pix-fmt", help="output pixel format (default: the input's, if the "
                                     "encoder takes it, else yuv420p); odd-sized video "
                                     "needs one without chroma subsampling, e.g. yuv444p")
    p.add_argument("--tag", metavar="FOURCC",
                   help="codec tag of the video in the container (default: hvc1 for HEVC "
                        "in .mp4/.mov, else the container's own, e.g. hev1 or avc1)")
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bar (shown on a terminal only)")
    add_runner_arguments(p)
    add_force_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from gencodec.filters.cli_options import NO_MODEL, require_model, runner_from_args
    from gencodec.filters.pyav import PreprocessFilter, check_transcode, transcode
    from gencodec.imageio import check_output

    encoder = {"codec": args.vcodec, "crf": args.crf, "preset": args.preset,
               "x265_params": args.x265_params, "pix_fmt": args.pix_fmt, "tag": args.tag}
    # fail before the (slow) model load: no model given, output exists, bad input, a
    # container that cannot carry the video or a stream to copy
    plain = require_model(args, allow_none=True) == NO_MODEL
    check_output(args.output, args.force, inputs=[args.input])
    check_transcode(args.input, args.output, **encoder)
    filt = None
    if plain:
        print(f"model: none (plain {args.vcodec}, no preprocessing)", file=sys.stderr)
    else:
        runner = runner_from_args(args)
        print(f"model: {runner.describe()}", file=sys.stderr)
        filt = PreprocessFilter(runner)
    counts = transcode(args.input, args.output, filt, **encoder,
                       force=args.force, progress=not args.no_progress)
    print(f"{args.output}: {counts['frames']} frames ({args.vcodec}), "
          f"{counts['copied_packets']} audio/subtitle packets copied")
    if counts["icc"] is not None:
        how = ("carried as colour tags (primaries, transfer)" if counts["icc_carried"] else
               "not carried: only sRGB and Display P3 profiles map to colour tags, and the "
               "output has no place for the profile itself")
        print(f"note: {args.input}: ICC profile '{counts['icc']}' {how}", file=sys.stderr)
    if counts["lost_frames"]:
        print(f"warning: {args.input}: {counts['lost_frames']} video frame(s) could not be "
              "decoded (damaged or truncated input); the output has the rest",
              file=sys.stderr)
    if counts["dropped_attachments"]:
        print(f"note: {counts['dropped_attachments']} attachment(s) not copied (fonts: "
              "only .mkv stores them; cover pictures: never copied)", file=sys.stderr)
    return 0
