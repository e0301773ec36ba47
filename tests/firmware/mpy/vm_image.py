# A built image's files on the MicroPython VM: written to a folder of their own, put first on
# sys.path, imported from the compiled .mpy files (tests/firmware/test_image_on_micropython.py).
import os
import sys


def install(root, files):
    for name, data in files:
        path = root + "/" + name
        folder = ""
        for part in path.split("/")[1:-1]:
            folder += "/" + part
            try:
                os.mkdir(folder)
            except OSError:
                pass  # exists
        with open(path, "wb") as f:
            f.write(data)
    sys.path.insert(0, root + "/lib")
    sys.path.insert(0, root)


def check_modules_load(root, modules):
    for m in modules:
        __import__(m)
        where = sys.modules[m].__file__
        if not (where.startswith(root + "/") and where.endswith(".mpy")):
            raise AssertionError(m + " was loaded from " + where + ", not from the image")


def check_log_ring(root):
    import logging

    from card import logring
    if logging.__file__ != root + "/lib/logging/__init__.mpy":
        raise AssertionError("logging came from " + logging.__file__)
    log, ring = logring.attach("image", slots=2, text=16)
    log.warning("from the %s", "image")
    if ring.entries() != [(0, logging.WARNING, "from the image")]:
        raise AssertionError("ring: " + repr(ring.entries()))
