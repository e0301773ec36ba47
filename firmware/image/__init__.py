"""Firmware images for the line card, on the host (CPython): build, sign, inspect.

``payload`` is the layout of the modules inside an image, ``container`` reads and writes a whole
image file (header from ``firmware.card.image_header``, payload, signature trailer), ``mplib`` resolves
the pinned micropython-lib packages, ``build`` compiles and packs, ``sign`` makes keys and signatures,
``inspect`` says what an image holds and whether it is valid. docs/firmware-update.md describes it all.
"""

from .errors import ImageError

__all__ = ["ImageError"]
