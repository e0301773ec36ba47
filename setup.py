"""Only what pyproject.toml cannot say: the DTMF detector in C, built with cffi at install time."""

from setuptools import setup

setup(cffi_modules=["drivers/dsp/_dtmf_build.py:ffibuilder"])
