"""The ``gencodec`` command line. Each sub-command lives in its own module with a
``register(subparsers)`` function; :mod:`gencodec.cli.main` lists them."""
