"""NAT lab: FTP topologies built from network namespaces (root only).

    from natftp.lab import Lab
    with Lab.build("contest", helper=True) as lab:
        lab.run("client", ["curl", "ftp://192.168.10.1:2121/"])

See docs/lab.md. The matrix runner is in :mod:`natftp.lab.matrix`, server launchers in
:mod:`natftp.lab.launchers`, topologies in :mod:`natftp.lab.topologies`.
"""

from __future__ import annotations

from natftp.lab.core import Lab, LabError

__all__ = ["Lab", "LabError"]
