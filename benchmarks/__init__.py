"""Benchmarks of flask-asyncendpoints: run each script with ``python benchmarks/<name>.py --help``.

This folder is a package so the scripts share :mod:`benchmarks._common` and the smoke test can call
each script's ``main``. Run as files, the scripts put the repository root on ``sys.path`` in place of
this folder, where ``http.py`` would otherwise hide the standard library's ``http`` package.
"""
