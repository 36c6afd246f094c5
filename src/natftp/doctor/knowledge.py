"""What the doctor knows about FTP servers and routers, kept as data.

``SIGNATURES`` recognises the server software from the banner, SYST and FEAT.
``FIXES[problem][server]`` is the setting to change for that server; ``"*"`` is the
fallback for a server we did not recognise. ``ROUTER`` holds the router-side fixes.
Placeholders in braces (``{public}``, ``{low}``, ``{high}``...) are filled by the checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVERS = ("vsftpd", "proftpd", "pure-ftpd", "pyftpdlib", "filezilla", "natftp", "iis",
           "unknown")

DISPLAY = {
    "vsftpd": "vsftpd", "proftpd": "ProFTPD", "pure-ftpd": "Pure-FTPd",
    "pyftpdlib": "pyftpdlib", "filezilla": "FileZilla Server", "natftp": "natftp",
    "iis": "Microsoft IIS FTP", "unknown": "unknown server",
}


@dataclass(frozen=True, slots=True)
class Signature:
    server: str
    where: str  # "banner", "syst", "feat", "help"
    pattern: re.Pattern[str]
    strength: int  # 3 = names itself, 1 = a hint only


def _sig(server: str, where: str, pattern: str, strength: int) -> Signature:
    return Signature(server, where, re.compile(pattern, re.IGNORECASE), strength)


SIGNATURES: tuple[Signature, ...] = (
    _sig("vsftpd", "banner", r"\bvsftpd\b", 3),
    _sig("proftpd", "banner", r"\bproftpd\b", 3),
    _sig("pure-ftpd", "banner", r"pure-?ftpd", 3),
    _sig("pyftpdlib", "banner", r"\bpyftpdlib\b", 3),
    _sig("filezilla", "banner", r"filezilla server", 3),
    _sig("natftp", "banner", r"\bnatftp\b", 3),
    _sig("iis", "banner", r"microsoft ftp service", 3),
    _sig("iis", "syst", r"windows_nt", 2),
    _sig("filezilla", "syst", r"filezilla", 2),
    _sig("natftp", "syst", r"natftp", 2),
    _sig("natftp", "feat", r"\bnatftp\b", 2),
    # Quieter hints, for a customised banner: each server's own HELP wording (several
    # start "The following commands are recognized", so only the ends tell them apart).
    _sig("natftp", "help", r"HELP command gives details", 2),
    _sig("vsftpd", "help", r"(?m)^Help OK\.$", 1),
    _sig("pure-ftpd", "banner", r"You are user number \d+ of \d+ allowed", 2),
    _sig("pyftpdlib", "help", r"Recognized commands on this server", 1),
    _sig("proftpd", "help", r"Direct comments to", 1),
)


def identify(texts: dict[str, str]) -> tuple[str, list[str]]:
    """(server, reasons) from {"banner": ..., "syst": ..., "feat": ..., "help": ...}."""
    score: dict[str, int] = {}
    reasons: list[str] = []
    for sig in SIGNATURES:
        text = texts.get(sig.where, "")
        m = sig.pattern.search(text) if text else None
        if m:
            score[sig.server] = score.get(sig.server, 0) + sig.strength
            reasons.append(f"{sig.where} contains {m.group(0)!r}")
    if not score:
        return "unknown", reasons
    best = max(score, key=lambda s: score[s])
    return best, reasons


# problem -> server -> fix sentence.  "*" is the fallback.
FIXES: dict[str, dict[str, str]] = {
    "pasv_unspecified": {
        "vsftpd": (
            "vsftpd runs with listen_ipv6=YES and pasv_address set: for a session on its "
            "IPv6 socket it cannot use the IPv4 pasv_address and advertises 0,0,0,0. In "
            "/etc/vsftpd.conf set listen=YES and listen_ipv6=NO (IPv4 only), keep "
            "pasv_address={public} (or remove it if a router's FTP helper rewrites the "
            "reply), and restart vsftpd."),
        "natftp": ("natftp never advertises 0.0.0.0 itself: something between rewrites "
                   "its reply. Set natftp serve --masquerade {public} (nat.masquerade) and "
                   "check the proxy or router in front of it."),
        "*": ("The server advertises the unspecified address 0.0.0.0; configure the "
              "address it advertises for passive mode to {public}."),
    },
    "pasv_private": {
        "vsftpd": ("In /etc/vsftpd.conf set pasv_address={public} (with "
                   "pasv_addr_resolve=YES if you give a host name) and restart vsftpd."),
        "proftpd": ("In proftpd.conf add MasqueradeAddress {public} (in the server or "
                    "<VirtualHost> section) and restart ProFTPD."),
        "pure-ftpd": ("Start pure-ftpd with -P {public} (Debian: echo {public} > "
                      "/etc/pure-ftpd/conf/ForcePassiveIP) and restart it."),
        "pyftpdlib": ("Set handler.masquerade_address = '{public}' on the FTPHandler class "
                      "before starting the server."),
        "filezilla": ("In FileZilla Server's settings, Passive mode: use the custom public "
                      "IP {public}."),
        "natftp": ("Run natftp serve with --masquerade {public} (config: nat.masquerade = "
                   "\"{public}\")."),
        "iis": ("In IIS Manager, FTP Firewall Support: set 'External IP Address of "
                "Firewall' to {public}."),
        "*": "Configure the server's passive (masquerade) address to {public}.",
    },
    "pasv_wrong": {
        "vsftpd": ("pasv_address in /etc/vsftpd.conf is wrong: set pasv_address={public} "
                   "(the address clients reach) or remove it, then restart vsftpd."),
        "proftpd": ("MasqueradeAddress in proftpd.conf is wrong: set it to {public} or "
                    "remove it."),
        "pure-ftpd": ("The -P (ForcePassiveIP) address is wrong: set it to {public} or "
                      "remove it."),
        "pyftpdlib": ("handler.masquerade_address is wrong: set it to '{public}' or leave "
                      "it None."),
        "natftp": "natftp's --masquerade (nat.masquerade) is wrong: set it to {public}.",
        "filezilla": "FileZilla Server's passive-mode public IP is wrong: set it to {public}.",
        "iis": "IIS 'External IP Address of Firewall' is wrong: set it to {public}.",
        "*": "The server's passive (masquerade) address is wrong: set it to {public}.",
    },
    "passive_range": {
        "vsftpd": ("Pin the passive range in /etc/vsftpd.conf (pasv_min_port={low}, "
                   "pasv_max_port={high}) and open exactly that range."),
        "proftpd": "Pin the range with PassivePorts {low} {high} in proftpd.conf.",
        "pure-ftpd": ("Pin the range with pure-ftpd -p {low}:{high} (Debian: "
                      "/etc/pure-ftpd/conf/PassivePortRange '{low} {high}')."),
        "pyftpdlib": "Pin the range with handler.passive_ports = range({low}, {high} + 1).",
        "natftp": "Pin the range with natftp serve --passive-ports {low}-{high}.",
        "filezilla": "Pin the passive port range in FileZilla Server's settings ({low}-{high}).",
        "iis": "Pin the data channel port range in IIS FTP Firewall Support ({low}-{high}).",
        "*": "Pin the server's passive port range ({low}-{high}).",
    },
    "login_refused": {
        "vsftpd": ("Check the user name and password, and that the user may log in to FTP "
                   "(vsftpd: local_enable=YES, a shell listed in /etc/shells, not in "
                   "/etc/ftpusers)."),
        "proftpd": ("Check the user name and password, and that ProFTPD lets the user in "
                    "(RequireValidShell, /etc/ftpusers, <Limit LOGIN>)."),
        "pure-ftpd": ("Check the user name and password (virtual users: pure-pw show "
                      "{user}; after a change, pure-pw mkdb)."),
        "pyftpdlib": ("Check the user name and password given to "
                      "authorizer.add_user('{user}', ...)."),
        "natftp": ("Check the user name and password: natftp serve --user NAME:PASSWORD, "
                   "or [[users]] with password_hash from `natftp passwd`; anonymous "
                   "logins need --anonymous (anonymous.enabled = true)."),
        "*": "Check the user name and password, and that the user may log in to FTP.",
    },
    "tls_broken": {
        "vsftpd": ("Check vsftpd's TLS settings in /etc/vsftpd.conf (rsa_cert_file, "
                   "rsa_private_key_file, ssl_tlsv1_2=YES) and its log."),
        "proftpd": ("Check TLSRSACertificateFile/TLSRSACertificateKeyFile and TLSProtocol "
                    "in proftpd.conf, and the TLS log (TLSLog)."),
        "natftp": ("Check natftp's certificate and key (--tls-cert/--tls-key, tls.cert and "
                   "tls.key; tls.min_version) and its log."),
        "*": ("Check the server's TLS certificate, key and protocol versions (TLS 1.2 or "
              "newer), and its log."),
    },
    "write_denied": {
        "vsftpd": "Set write_enable=YES in /etc/vsftpd.conf and restart vsftpd.",
        "proftpd": ("Allow writes for this user: in proftpd.conf, <Limit WRITE> AllowAll "
                    "(or AllowUser {user}) </Limit> in the <Directory> for the upload "
                    "path, and check the Unix permissions of that directory."),
        "pure-ftpd": ("Pure-FTPd has no global write switch for users: check the Unix "
                      "permissions of the directory for {user}, the virtual user's quota "
                      "(pure-pw usermod {user} -n/-N), and that -i "
                      "(AnonymousCantUpload) is not what refused it."),
        "pyftpdlib": ("Give the user write permissions: authorizer.add_user('{user}', ..., "
                      "perm='elradfmwMT') ('w' store, 'd' delete)."),
        "natftp": ("In natftp, remove read_only = true (--read-only) and give {user} "
                   "permissions.write = true (and delete = true) in its [[users]] entry "
                   "(a --user NAME:PASSWORD user may write); check that the server's "
                   "user can write ROOT on disk."),
        "filezilla": "Give {user} write/delete permission on the mount point in FileZilla Server.",
        "iis": "Grant Write in the FTP Authorization Rules for {user} and on the NTFS folder.",
        "*": "Give {user} write permission in the server's configuration and on disk.",
    },
    "tls_missing": {
        "vsftpd": ("Set ssl_enable=YES, rsa_cert_file= and rsa_private_key_file= in "
                   "/etc/vsftpd.conf."),
        "proftpd": "Load mod_tls and set TLSEngine on with TLSRSACertificateFile.",
        "pure-ftpd": "Start pure-ftpd with -Y 1 (TLS optional) or -Y 2 (TLS required).",
        "pyftpdlib": "Use pyftpdlib.handlers.TLS_FTPHandler with a certfile.",
        "natftp": ("Start natftp serve with --tls (a self-signed certificate is generated "
                   "once and its SHA-256 fingerprint printed) or --tls-cert FILE --tls-key "
                   "FILE (config: tls.enabled = true, tls.cert, tls.key)."),
        "*": "Enable explicit FTPS (AUTH TLS) on the server.",
    },
    "slow_banner": {
        "vsftpd": "Set reverse_lookup_enable=NO in /etc/vsftpd.conf.",
        "proftpd": "Add UseReverseDNS off and IdentLookups off to proftpd.conf.",
        "pure-ftpd": "Start pure-ftpd with -H (DontResolve).",
        "*": "Turn off reverse DNS (and ident) lookups of clients in the server, or fix "
             "the DNS the server uses.",
    },
    "tls_reuse": {
        "vsftpd": ("vsftpd requires TLS session reuse on data connections "
                   "(require_ssl_reuse=YES, the default): use a client that reuses sessions "
                   "(FileZilla, lftp, curl) or set require_ssl_reuse=NO."),
        "proftpd": ("ProFTPD requires session reuse (TLSOptions without "
                    "NoSessionReuseRequired): use a reusing client or add that option."),
        "natftp": ("natftp refuses data connections that do not resume the control "
                   "session (tls.require_session_reuse = true, --tls-require-session-reuse): "
                   "use a client that resumes (curl, lftp, natftp) or turn it off."),
        "*": "The server requires TLS session reuse on data connections; use a client "
             "that reuses the control connection's session.",
    },
}

ROUTER: dict[str, str] = {
    "forward_range": (
        "On the router in front of the server, forward TCP ports {low}-{high} (the passive "
        "range) to the server, and open them in the server's firewall; e.g. nftables: "
        "tcp dport {low}-{high} dnat to {server_ip}, or iptables -t nat -A PREROUTING -p tcp "
        "--dport {low}:{high} -j DNAT --to-destination {server_ip}."),
    "helper": (
        "Alternatively, let the router's FTP helper (nf_conntrack_ftp / nf_nat_ftp, attached "
        "with an nftables 'ct helper set' rule or iptables -j CT --helper ftp) rewrite the "
        "227 reply; it only rewrites a 227 carrying the server's own address, never "
        "0,0,0,0, and it cannot read an FTPS (TLS) control channel."),
    "helper_blind": (
        "A router's FTP helper rewrites PASV replies on the plain control channel but is "
        "blind under TLS: with FTPS the server itself must advertise the public address "
        "({public}) and the router must forward the passive range (or, where server and "
        "client both support it, CCC after login clears the control channel so the helper "
        "reads it again; natftp: tls.ccc = true)."),
    "active_local": (
        "Your side does not accept the server's data connection: a local firewall drops "
        "inbound connections, or a NAT router in front of you has no FTP helper. Use passive "
        "mode (EPSV/PASV), or allow inbound TCP from the server to this host (nftables: ct "
        "state related accept with the FTP helper, or accept tcp from {server})."),
}


def fix(problem: str, server: str, **values: str) -> str:
    table = FIXES[problem]
    text = table.get(server) or table["*"]
    return _fill(text, values)


def router(problem: str, **values: str) -> str:
    return _fill(ROUTER[problem], values)


def _fill(text: str, values: dict[str, str]) -> str:
    class _Keep(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return "<" + key + ">"
    return text.format_map(_Keep(values))
