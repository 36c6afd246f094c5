"""UPnP IGD through async-upnp-client: SSDP search on the LAN, then SOAP actions.

The search multicasts M-SEARCH for an InternetGatewayDevice (repeated once, UDP is
lossy) and takes the first answer whose LOCATION points at the host that answered (a
device may not send us to a third host). The device description is fetched, and
``GetExternalIPAddress`` / ``AddPortMapping`` / ``DeletePortMapping`` are called on its
WANIPConnection (or WANPPPConnection) service.

async-upnp-client (and aiohttp under it, ~15 MiB and ~0.2 s to import) is imported when
a search or a mapping first runs, not with this module: a server that does no discovery
(every configuration on loopback or with a fixed masquerade) never loads it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from natftp.nat.discovery.gateway import local_address_toward
from natftp.proto.addr import IPAddress, ip

if TYPE_CHECKING:
    from async_upnp_client.client import UpnpAction
    from async_upnp_client.profiles.igd import IgdDevice
    from async_upnp_client.utils import CaseInsensitiveDict

SEARCH_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
)

# UPnP IGD error codes worth a sentence of their own (WANIPConnection:2 spec, 2.5)
UPNP_ERRORS = {
    402: "invalid arguments",
    501: "action failed",
    606: "action not authorized",
    714: "no such mapping",
    715: "wildcard not permitted in source address",
    716: "wildcard not permitted in external port",
    718: "port already mapped to another host",
    724: "internal and external port must be equal",
    725: "only permanent leases supported",
    726: "remote host must be a wildcard",
    727: "external port must be a wildcard",
    728: "no port maps available",
    729: "conflict with another mechanism",
    732: "wildcard not permitted in internal port",
}


#: the HTTP requester's own bound on one request, seconds (callers bound them tighter)
REQUEST_BOUND = 60


def import_clients() -> None:
    """Import the UPnP and HTTP clients (async-upnp-client, aiohttp) that a search, a
    mapping or a metadata query would load on first use. Every round calls this before
    its clock starts, so that the import (~0.2 s, more on a loaded machine, with the loop
    blocked) never counts against one source: UPnP would lose its place to NAT-PMP."""
    import aiohttp  # noqa: F401
    import async_upnp_client.aiohttp  # noqa: F401
    import async_upnp_client.client_factory  # noqa: F401
    import async_upnp_client.exceptions  # noqa: F401
    import async_upnp_client.profiles.igd  # noqa: F401
    import async_upnp_client.search  # noqa: F401


class UpnpGatewayError(Exception):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _refused(exc: BaseException) -> bool:
    """An IGD's SOAP fault (UpnpActionResponseError), without importing the library to
    ask: an exception from it means it is loaded already."""
    import sys

    mod = sys.modules.get("async_upnp_client.exceptions")
    return mod is not None and isinstance(exc, mod.UpnpActionResponseError)


def describe_upnp_error(exc: BaseException) -> tuple[str, int | None]:
    if _refused(exc):
        code: int | None = getattr(exc, "error_code", None)
        text = UPNP_ERRORS.get(code or 0, getattr(exc, "error_desc", None) or "refused")
        return f"UPnP error {code} ({text})", code
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer", None
    return f"{type(exc).__name__}: {exc}".rstrip(": "), None


async def search(timeout: float) -> str:
    """The LOCATION URL of the first IGD answering an SSDP search within ``timeout``."""
    from async_upnp_client.search import SsdpSearchListener

    loop = asyncio.get_running_loop()
    found: asyncio.Future[str] = loop.create_future()

    def on_response(headers: CaseInsensitiveDict) -> None:
        location = headers.get_lower("location")
        host = headers.get_lower("_host")
        if not location or found.done():
            return
        if urlsplit(str(location)).hostname != host:
            return  # a LOCATION pointing elsewhere than the responder: ignored
        found.set_result(str(location))

    mx = max(1, min(int(timeout), 2))
    listeners = [SsdpSearchListener(callback=on_response, loop=loop, timeout=mx,
                                    search_target=st) for st in SEARCH_TARGETS]
    try:
        for lst in listeners:
            await lst.async_start()
        for attempt in range(2):
            for lst in listeners:
                lst.async_search()
            try:
                return await asyncio.wait_for(asyncio.shield(found),
                                              timeout / 2 if attempt == 0 else timeout)
            except TimeoutError:
                continue
        raise TimeoutError("no UPnP IGD answered the SSDP search")
    finally:
        for lst in listeners:
            lst.async_stop()


class UpnpGateway:
    """An IGD found on the LAN, ready for SOAP actions."""

    def __init__(self, location: str, igd: IgdDevice) -> None:
        self.location = location
        self.igd = igd
        self.host = urlsplit(location).hostname or ""
        self.local_address = local_address_toward(self.host)

    @classmethod
    async def find(cls, timeout: float) -> UpnpGateway:
        from async_upnp_client.aiohttp import AiohttpRequester
        from async_upnp_client.client_factory import UpnpFactory
        from async_upnp_client.profiles.igd import IgdDevice

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        location = await search(timeout)
        left = max(0.5, deadline - loop.time())
        # every call is bounded by its caller's asyncio.wait_for; the requester's own
        # bound only has to stay out of the way of a slow router's queue (a mapper
        # removing 101 mappings waits longer for an answer than discovery does)
        requester = AiohttpRequester(timeout=REQUEST_BOUND)
        factory = UpnpFactory(requester, non_strict=True)
        device = await asyncio.wait_for(factory.async_create_device(location), left)
        igd = IgdDevice(device, None)
        if igd._any_action(["WANIPC", "WANPPPC"], "GetExternalIPAddress") is None:
            raise UpnpGatewayError(f"device at {location} has no WAN connection service")
        return cls(location, igd)

    async def external_address(self, timeout: float = 3.0) -> IPAddress:
        raw = await asyncio.wait_for(self.igd.async_get_external_ip_address(), timeout)
        if not raw:
            raise UpnpGatewayError("IGD answered an empty external address")
        return ip(raw)

    def _action(self, name: str) -> UpnpAction:
        action = self.igd._any_action(["WANIPC", "WANPPPC"], name)
        if action is None:
            raise UpnpGatewayError(f"IGD at {self.location} has no {name} action")
        return action

    async def add_mapping(self, port: int, lease: int, description: str,
                          timeout: float = 5.0, internal_port: int | None = None) -> int:
        """Map TCP ``port`` (external = internal); returns the lease granted (0 = permanent).

        Asking again renews it. The remote host is sent as the empty string, the
        wildcard of the IGD specification: miniupnpd takes "0.0.0.0" for a specific
        host and refuses the renewal of its own mapping with 718 (ConflictInMappingEntry).
        The lease goes as a plain number of seconds (``timedelta.seconds`` would drop
        whole days)."""
        async def add(lease_s: int) -> None:
            await asyncio.wait_for(self._action("AddPortMapping").async_call(
                NewRemoteHost="", NewExternalPort=port, NewProtocol="TCP",
                NewInternalPort=internal_port or port, NewInternalClient=self.local_address,
                NewEnabled=True, NewPortMappingDescription=description,
                NewLeaseDuration=lease_s), timeout)
        try:
            await add(lease)
            return lease
        except Exception as e:
            if _refused(e) and getattr(e, "error_code", None) == 725 and lease:
                await add(0)  # only permanent leases: we remove them on shutdown
                return 0
            raise

    async def delete_mapping(self, port: int, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._action("DeletePortMapping").async_call(
            NewRemoteHost="", NewExternalPort=port, NewProtocol="TCP"), timeout)


__all__ = ["UpnpGateway", "UpnpGatewayError", "describe_upnp_error", "search"]
