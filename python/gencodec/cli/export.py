"""``gencodec export``: the preprocessing model as TorchScript or ONNX."""

from __future__ import annotations

from gencodec.cli.options import add_force_argument
from gencodec.filters.cli_options import add_model_argument


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export the preprocessing model (TorchScript for FFmpeg, ONNX)",
        description="Write the preprocessing model as TorchScript (FFmpeg dnn_processing, "
                    "dnn_backend=torch) or ONNX. Both take float32 RGB NCHW in [0,1] of any "
                    "height and width and return the same layout. An ONNX model over "
                    "protobuf's 2 GB limit keeps its weights in OUTPUT.data; keep the two "
                    "files side by side.",
        epilog="example: gencodec export --model DIR --format torchscript -o filter.pt; "
               "ffmpeg -i in.mp4 -vf \"format=rgb24,dnn_processing=dnn_backend=torch:"
               "model=filter.pt,format=yuv420p\" -c:v libx265 -crf 28 out.mp4 (FFmpeg 7 or "
               "later built with --enable-libtorch; the model takes RGB, hence the "
               "format filters)")
    add_model_argument(p)
    p.add_argument("--format", choices=("torchscript", "onnx"), required=True,
                   help="torchscript (.pt: FFmpeg dnn_processing with dnn_backend=torch, "
                        "LibTorch) or onnx (ONNX Runtime, OpenVINO)")
    p.add_argument("-o", "--output", required=True,
                   help="output file: .pt (or .pth) for torchscript, .onnx for onnx")
    p.add_argument("--onnx-exporter", choices=("dynamo", "legacy"), default="dynamo",
                   help="torch.onnx exporter (dynamo falls back to legacy; default: dynamo)")
    p.add_argument("--external-data-threshold", type=int, metavar="BYTES",
                   help="ONNX: keep the weights in OUTPUT.data, beside OUTPUT, when the model "
                        "is larger than this (default: protobuf's 2 GB limit; 0: always)")
    add_force_argument(p)
    p.set_defaults(func=run)


#: Output suffixes of each format: the name says what the file holds.
SUFFIXES = {"torchscript": (".pt", ".pth"), "onnx": (".onnx",)}


def run(args) -> int:
    from pathlib import Path

    from gencodec.errors import InputError
    from gencodec.filters.cli_options import require_model
    from gencodec.filters.export import export_onnx, export_torchscript, onnx_data_path
    from gencodec.filters.model import load_frame_model
    from gencodec.imageio import atomic_output, check_output

    onnx = args.format == "onnx"
    suffixes = SUFFIXES[args.format]
    if Path(args.output).suffix.lower() not in suffixes:
        what = "an ONNX" if onnx else "a TorchScript"
        raise InputError(f"{args.output}: {what} model is named "
                         f"{' or '.join(suffixes)}; use -o "
                         f"{Path(args.output).with_suffix(suffixes[0])}")
    check_output(args.output, args.force)  # fail before the (slow) model load
    if onnx:
        check_output(onnx_data_path(args.output), args.force)
    model = load_frame_model(require_model(args))
    if onnx:
        export_onnx(model, args.output, dynamo=args.onnx_exporter == "dynamo",
                    force=args.force, external_data_threshold=args.external_data_threshold)
    else:
        with atomic_output(args.output, args.force) as tmp:
            export_torchscript(model, tmp)
    data = onnx_data_path(args.output)
    where = f", weights in {data}" if onnx and data.is_file() else ""
    print(f"{args.output}: {args.format}, {model.describe()}; input float32 RGB NCHW [0,1], "
          f"any HxW{where}")
    return 0
