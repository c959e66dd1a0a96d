"""``serve``: the LitServe app, its upload rules and the web page. Imports ``core``, ``data.images`` and
``inference``; never ``training``, and no torch when it serves an ONNX file.
"""
