"""What the tests share: real peer servers, natftp servers, raw FTP control connections.

pytest puts ``tests/`` on the import path (``pythonpath`` in pyproject.toml), so a test
imports ``from support.peers import vsftpd``; helpers used by one test directory only
stay beside its tests.

- ``peers``        vsftpd, ProFTPD, Pure-FTPd and pyftpdlib as peers, and free ports;
- ``servertools``  ``natftp serve`` as a subprocess (the ``natftp_server`` fixture's engine);
- ``ftpraw``       a raw control connection that sends exactly what a test writes;
- ``resumetools``  the clients' resumes (curl, lftp, wget, ftplib, natftp) against a server;
- ``clientpeers``  pyftpdlib variants (no EPSV, throttled, TLS) for the client's tests;
- ``servers``      pyftpdlib, vsftpd and ProFTPD for the doctor, also inside a namespace;
- ``pyftpd_peer.py``  the pyftpdlib server those two run (a script, in a subprocess).
"""
