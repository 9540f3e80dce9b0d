"""gencodec.eval: metrics, rate-distortion-perception runs, BD-rate, plots, reports."""
