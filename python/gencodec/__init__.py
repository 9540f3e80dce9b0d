"""gencodec: pretrained diffusion models in real media pipelines.

The public face of the package:

* :mod:`gencodec.codecs_ext` -- one :class:`~gencodec.codecs_ext.base.Codec` interface
  over stock codecs (jpeg, webp, bpg, heif, avif, x265) and the generative ones.
* :mod:`gencodec.container` -- the versioned, checksummed bitstream container.
* :mod:`gencodec.imageio` -- safe image loading (modes, EXIF, limits) and atomic writes.
* :mod:`gencodec.cli` -- the ``gencodec`` command.
"""

from gencodec.errors import BitstreamError, GencodecError, InputError, OutputExistsError

__version__ = "0.1.0"

__all__ = ["BitstreamError", "GencodecError", "InputError", "OutputExistsError", "__version__"]
