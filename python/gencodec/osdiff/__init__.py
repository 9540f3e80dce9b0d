"""OSDiff: a learned latent codec whose decoded latent conditions a one-step diffusion
decoder (Jia et al., "One-Step Diffusion for Perceptual Image Compression").

* :mod:`~gencodec.osdiff.model`: :class:`OSDiff`, :class:`OSDiffConfig` (the interface
  training and the codec use)
* :mod:`~gencodec.osdiff.latent_codec`: G_a, G_s, hyperprior, ELIC slices with a
  checkerboard context
* :mod:`~gencodec.osdiff.entropy`: entropy models and constriction coding
* :mod:`~gencodec.osdiff.control`: the ControlNet-XS-style branch on a diffusers UNet
* :mod:`~gencodec.osdiff.keymap`: loading the public OSDiff checkpoints
* :mod:`~gencodec.osdiff.layers`: the convolution blocks of G_a, G_s and the entropy
  parameters (CompressAI's / ELIC's)
* :mod:`~gencodec.osdiff.discriminator`: the feature discriminator and the GAN
  losses of Eqs. 12 and 14
"""
