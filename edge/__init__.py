"""mpox_edge.edge: the on-device runtime.

Nothing in this package imports torch, nncf, onnx or onnxsim at module level:
a Raspberry Pi or a kiosk installs only numpy, OpenCV and the inference runtimes.
"""

import time

__version__ = "0.1.0"
# When this interpreter began running mpox-edge: bench's cold start counts from here, not
# from the process's fork (a shell's `exec` of its last command inherits the shell's start).
STARTED = time.perf_counter()
