"""natftp: FTP that just works through NAT and firewalls."""

__version__ = "0.1.0"
