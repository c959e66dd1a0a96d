"""Every place where catdog_pl leans on a library's private parts, one module a library, so that an upgrade that
moves them breaks here, where ``tests/test_compat.py`` checks each one against the installed version.

Each module imports its library only when one of its functions is called: ``compat.litserve`` must not bring torch
into the ONNX server.
"""
