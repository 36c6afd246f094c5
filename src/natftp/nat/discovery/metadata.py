"""Cloud instance metadata: the public IPv4 address of a VM behind the provider's 1:1 NAT.

AWS (IMDSv2: ``PUT /latest/api/token`` with a TTL header, then ``GET
/latest/meta-data/public-ipv4`` with the token), GCP (``Metadata-Flavor: Google``,
``.../access-configs/0/external-ip``) and Azure (``Metadata: true``,
``.../publicIpAddress?api-version=...&format=text``), all at 169.254.169.254, asked at
the same time; the first valid answer wins. Environment proxies are never used (the
endpoint is link-local; a proxy would answer for its own host).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from natftp.proto.addr import IPAddress, ip

if TYPE_CHECKING:  # aiohttp is imported when a query runs (~15 MiB, ~0.2 s)
    import aiohttp

DEFAULT_ENDPOINT = "169.254.169.254"

AWS_TOKEN_PATH = "/latest/api/token"
AWS_IP_PATH = "/latest/meta-data/public-ipv4"
GCP_IP_PATH = ("/computeMetadata/v1/instance/network-interfaces/0/access-configs/0/"
               "external-ip")
AZURE_IP_PATH = ("/metadata/instance/network/interface/0/ipv4/ipAddress/0/"
                 "publicIpAddress?api-version=2021-02-01&format=text")


class MetadataError(Exception):
    pass


def _parse(provider: str, text: str) -> IPAddress:
    value = text.strip()
    try:
        return ip(value)
    except ValueError:
        raise MetadataError(f"{provider}: answer is not an address: {value[:40]!r}") from None


async def aws(session: aiohttp.ClientSession, base: str) -> IPAddress:
    async with session.put(base + AWS_TOKEN_PATH,
                           headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}) as r:
        if r.status != 200:
            raise MetadataError(f"aws: token request answered HTTP {r.status}")
        token = (await r.text()).strip()
    async with session.get(base + AWS_IP_PATH,
                           headers={"X-aws-ec2-metadata-token": token}) as r:
        if r.status == 404:
            raise MetadataError("aws: instance has no public IPv4 address")
        if r.status != 200:
            raise MetadataError(f"aws: public-ipv4 answered HTTP {r.status}")
        return _parse("aws", await r.text())


async def gcp(session: aiohttp.ClientSession, base: str) -> IPAddress:
    async with session.get(base + GCP_IP_PATH, headers={"Metadata-Flavor": "Google"}) as r:
        if r.headers.get("Metadata-Flavor") != "Google":
            raise MetadataError("gcp: answer lacks the Metadata-Flavor: Google header")
        if r.status != 200:
            raise MetadataError(f"gcp: external-ip answered HTTP {r.status}")
        return _parse("gcp", await r.text())


async def azure(session: aiohttp.ClientSession, base: str) -> IPAddress:
    async with session.get(base + AZURE_IP_PATH, headers={"Metadata": "true"}) as r:
        if r.status != 200:
            raise MetadataError(f"azure: publicIpAddress answered HTTP {r.status}")
        return _parse("azure", await r.text())


PROVIDERS: dict[str, Callable[[aiohttp.ClientSession, str], Awaitable[IPAddress]]] = {
    "aws": aws, "gcp": gcp, "azure": azure,
}


async def query(timeout: float, endpoint: str = DEFAULT_ENDPOINT,
                providers: tuple[str, ...] = ("aws", "gcp", "azure")
                ) -> tuple[IPAddress, str]:
    """Ask every provider's endpoint at once; (address, provider) of the first good answer."""
    import aiohttp

    base = f"http://{endpoint}"
    errors: dict[str, str] = {}
    t = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=t, trust_env=False) as session:
        tasks = {asyncio.ensure_future(PROVIDERS[p](session, base)): p for p in providers}
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        return task.result(), tasks[task]
                    errors[tasks[task]] = (str(exc) if isinstance(exc, MetadataError)
                                           else f"{tasks[task]}: {_describe(exc)}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    # in the providers' order, not the order they gave up (a log line to compare)
    raise MetadataError("; ".join(errors[p] for p in providers if p in errors))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
