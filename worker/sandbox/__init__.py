"""The sandbox every render runs in: bubblewrap, a zygote, and one child per image job.

`supervisor` is the worker's side; `launcher` starts the sandbox; `zygote` and `child` run
inside it; `confinement` and `seccomp` are the layers they apply and verify; `policy` is
ImageMagick's; `protocol` is the wire format between them. Only `supervisor`, `launcher`,
`protocol`, `confinement`, `seccomp` and `policy` are imported by the worker, which never
loads Pillow or Wand.
"""

from worker.sandbox.confinement import ConfinementError
from worker.sandbox.supervisor import Sandbox

__all__ = ["ConfinementError", "Sandbox"]
