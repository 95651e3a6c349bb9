"""mpox_edge.edge: the on-device runtime.

Nothing in this package imports torch, nncf, onnx or onnxsim at module level:
a Raspberry Pi or a kiosk installs only numpy, OpenCV and the inference runtimes.
"""

__version__ = "0.1.0"
