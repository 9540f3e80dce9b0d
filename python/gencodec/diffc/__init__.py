"""DiffC (Vonderfecht & Liu, ICLR 2025): lossy compression with a pretrained diffusion
model by reverse-channel coding of its denoising chain.

- :mod:`~gencodec.diffc.coder`: Algorithms 1 and 2 (send x_T ... x_t with PFR) and the
  reconstructions (DiffC-F / DDIM, DiffC-A / ancestral, one-step x0);
- :mod:`~gencodec.diffc.profile`: the coding profile (timesteps, chunk size, index model)
  whose sha256 enters the stream fingerprint;
- :mod:`~gencodec.diffc.bitstream`: the progressive payload (one CRC-checked segment per
  step) and the constriction entropy coding of PFR indices;
- :mod:`~gencodec.diffc.calibrate`: Algorithm 3, the minimum-cost timestep schedule.

The codec is :class:`gencodec.codecs_ext.diffc.DiffcCodec`.
"""
