"""Object storage: a user's home as a key prefix in an S3 bucket (AWS S3, MinIO, Ceph RGW,
SeaweedFS, Garage, rclone serve s3, ...).

The client library is miniopy-async, chosen by measurement (bench/s3_clients.py and
bench/README.md): against rclone serve s3 on loopback it needed ~6x less CPU than
aiobotocore to list 10,000 keys and ~10x less per small request, and, unlike obstore
(faster still), it lists page by page with a delimiter, can write ``dir/`` markers and
exposes the multipart upload itself.

How FTP maps onto objects (docs/server.md, "Object storage", says it for users):

- a virtual path ``/a/b.txt`` is the key ``PREFIX/a/b.txt``; a directory ``/a`` is the
  prefix ``PREFIX/a/``: it exists while a key starts with it, or when its empty marker
  object ``PREFIX/a/`` (MKD) does;
- a download is a GET, ranged from the REST offset, streamed;
- an upload is a PutObject when it fits in one part, else a multipart upload whose
  parts are sent while the data arrives (at most ``UPLOAD_CONCURRENCY`` parts in flight
  besides the one filling: memory stays bounded whatever the size), completed only when
  the upload ended well, aborted otherwise: the object appears whole or not at all, and
  the object it replaces stays as it was until then;
- a listing is ListObjectsV2 with the ``/`` delimiter, read page by page while it is
  sent;
- rename is copy + delete (not atomic: a failure in between leaves both names); a
  directory is renamed object by object only up to ``rename_dir_limit`` objects;
- an interrupted upload is *kept* to be resumed, as on disk (issue 14 item 3), when
  its multipart upload holds whole parts: the upload stays open on the service and a
  small marker object under the reserved prefix ``STATE`` names it (see
  :class:`Kept`); SIZE answers the bytes in its parts, REST of exactly that + STOR, or
  APPE, continues it with the next part, and completing it makes the object. A kept
  upload is stale once an object of its name is stored after it (the service's own
  times), and expires after ``uploads.partial_max_age`` (:meth:`S3Backend.sweep`);
- appending to an object is what objects cannot do: APPE to an existing object and
  REST+STOR with no kept upload are refused (a composed object would need
  UploadPartCopy, which not every service has).

Every failure becomes a :class:`S3StorageError` whose text names the cause the service
gave (no such bucket, access denied, throttling, unreachable) and whose ``code`` is the
FTP reply that fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import secrets
import stat
import time
import urllib.parse
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from natftp.proto import paths
from natftp.proto.listing import FileFacts
from natftp.storage.local import StorageError, is_temp_name, partial_name, refuse_reserved

if TYPE_CHECKING:
    from miniopy_async.api import Minio

#: the first part size of a multipart upload; it doubles every PART_STEP parts up to
#: MAX_PART, so the 10,000 parts S3 allows hold ~0.5 TB while memory stays small
PART_SIZE = 8 << 20
PART_STEP = 1000
MAX_PART = 64 << 20
MAX_PARTS = 10000
#: parts being sent while the next one fills (memory: (1 + this) x part size)
UPLOAD_CONCURRENCY = 2
#: the size the buffer of an upload's first part starts at (it doubles up to a part)
FIRST_BUFFER = 64 << 10
#: keys a listing asks for per page (ListObjectsV2's maximum)
PAGE = 1000
#: the prefix (below s3.prefix) of the markers of kept uploads: a name in the reserved
#: pattern of upload files, so listings leave it out and no client can name it
STATE = partial_name("kept")
_DIR_MODE = stat.S_IFDIR | 0o755
_FILE_MODE = stat.S_IFREG | 0o644


def part_size(number: int) -> int:
    """The size of part ``number`` (1-based) of an upload: a pure function of the number,
    so an upload's layout never depends on how its data arrived."""
    return min(PART_SIZE << ((number - 1) // PART_STEP), MAX_PART)


class S3StorageError(StorageError):
    """A failed object-storage operation: ``str(e)`` names the cause, ``code`` is the
    FTP reply (550 no such file / access denied, 450 busy or throttled, 451 the service
    failed or is unreachable, 552 too large, 553 name not allowed)."""

    def __init__(self, text: str, code: int = 550) -> None:
        super().__init__(text, code)


@dataclass(frozen=True, slots=True, repr=False)
class S3Settings:
    """Where the objects are and how to reach them (``[storage]`` in docs/server.md).
    Its repr shows no credentials (a reload's refusal prints the setting)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    path_style: bool = True
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    rename_dir_limit: int = 1000

    def describe(self) -> str:
        """``s3://bucket/prefix at endpoint`` (no credentials)."""
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint or 'AWS S3'}"

    def __repr__(self) -> str:
        keys = "keys in [storage]" if self.access_key_id else "keys from the environment"
        return f"{self.describe()} ({keys})"


def parse_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix without slashes at its ends)."""
    if not url.startswith("s3://"):
        raise ValueError("an object-storage location is s3://BUCKET or s3://BUCKET/PREFIX")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError("the URL names no bucket (s3://BUCKET[/PREFIX])")
    return bucket, clean_prefix(prefix)


def clean_prefix(prefix: str) -> str:
    """A key prefix as natftp keeps it: segments joined by ``/``, none empty, ``.``/``..``
    refused (most services refuse such keys, and they would alias other names)."""
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") or "\0" in p for p in parts):
        raise ValueError(f"prefix {prefix!r} has a '.', '..' or NUL segment")
    return "/".join(parts)


def _endpoint(settings: S3Settings) -> tuple[str, bool]:
    """host[:port] and whether it is https, from s3.endpoint (AWS when unset)."""
    if settings.endpoint is None:
        region = settings.region or "us-east-1"
        return f"s3.{region}.amazonaws.com", True
    u = urllib.parse.urlsplit(settings.endpoint)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(f"endpoint {settings.endpoint!r} is not an http:// or https:// URL")
    if u.path not in ("", "/"):
        raise ValueError(f"endpoint {settings.endpoint!r} has a path; give scheme://host:port")
    return u.netloc, u.scheme == "https"


def credentials_provider(settings: S3Settings) -> Any:
    """The standard sources, in this order: the config keys, the AWS_* variables, the
    shared credentials file (~/.aws/credentials, profile s3.profile or AWS_PROFILE).
    No instance-metadata lookup: natftp sends nothing to an address it was not given."""
    from miniopy_async.credentials.providers import (
        AWSConfigProvider,
        ChainedProvider,
        EnvAWSProvider,
        StaticProvider,
    )

    if settings.access_key_id:
        return StaticProvider(settings.access_key_id, settings.secret_access_key or "",
                              settings.session_token)
    return ChainedProvider([EnvAWSProvider(), AWSConfigProvider(profile=settings.profile)])


def make_client(settings: S3Settings) -> Minio:
    from miniopy_async.api import Minio

    # the library's retry helper logs every request at DEBUG ("Attempt 1 out of 5"):
    # noise in `natftp serve -v`, which is for the server's own story
    logging.getLogger("aiohttp_retry").setLevel(logging.INFO)
    host, secure = _endpoint(settings)
    client = Minio(host, secure=secure, region=settings.region,
                   credentials=credentials_provider(settings))
    if settings.path_style:
        client.disable_virtual_style_endpoint()
    else:
        client.enable_virtual_style_endpoint()
    return client


# -- errors -------------------------------------------------------------------------------

_THROTTLED = ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
              "TooManyRequests", "ServiceUnavailable", "RequestTimeout", "InternalError")
_KEYS_REFUSED = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                 "InvalidToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed")


def service_code(e: BaseException) -> tuple[str | None, int | None, str]:
    """(the service's error code, the HTTP status, its message) of a library error, or
    (None, None, "") for anything else. The library raises S3Error for an error body it
    recognises and InvalidResponseError for one sent as ``text/xml`` (rclone does): the
    code is read from the body then."""
    from miniopy_async.error import InvalidResponseError, S3Error, ServerError

    if isinstance(e, S3Error):
        status = getattr(e.response, "status", None)
        return e.code, status, e.message or ""
    if isinstance(e, InvalidResponseError):
        body = e._body or ""
        code = re.search(r"<Code>([^<]*)</Code>", body)
        msg = re.search(r"<Message>([^<]*)</Message>", body)
        status = e._code
        found = code.group(1) if code else {404: "NotFound", 403: "AccessDenied"}.get(status)
        return found, status, msg.group(1) if msg else ""
    if isinstance(e, ServerError):
        return None, e.status_code, str(e)
    return None, None, ""


def _why(what: str, e: BaseException, settings: S3Settings) -> S3StorageError:
    """The FTP-fit error for a failure of ``what`` (a virtual path or an action)."""
    if isinstance(e, S3StorageError):
        return e
    code, status, message = service_code(e)
    if code is not None:
        if code in ("NoSuchKey", "NotFound"):
            return S3StorageError(f"{what}: no such file or directory")
        if code == "NoSuchBucket":
            return S3StorageError(f"{what}: the bucket {settings.bucket!r} does not exist "
                                  "(s3.bucket)", 451)
        if code == "AccessDenied":
            return S3StorageError(f"{what}: access denied by the object store (the "
                                  "server's S3 key may not do this here)")
        if code in _KEYS_REFUSED:
            return S3StorageError(f"{what}: the object store refused the server's S3 "
                                  f"credentials ({code})", 451)
        if code in _THROTTLED:
            return S3StorageError(f"{what}: the object store is busy or throttling "
                                  f"({code}); try again later", 450)
        if code == "EntityTooLarge":
            return S3StorageError(f"{what}: too large for the object store ({code})", 552)
        if code in ("InvalidArgument", "KeyTooLongError", "InvalidObjectName"):
            return S3StorageError(f"{what}: name refused by the object store ({code})", 553)
        return S3StorageError(f"{what}: the object store answered {code}: "
                              f"{message or 'no message'}", 451)
    if status is not None:
        if status in (429, 503):
            return S3StorageError(f"{what}: the object store is busy or throttling "
                                  f"(HTTP {status}); try again later", 450)
        return S3StorageError(f"{what}: the object store failed (HTTP {status})", 451)
    if isinstance(e, (OSError, asyncio.TimeoutError)) or type(e).__module__.startswith(
            "aiohttp"):
        return S3StorageError(f"{what}: cannot reach the object store at "
                              f"{settings.endpoint or 'AWS S3'} ({e})", 451)
    if isinstance(e, ValueError):
        if "credentials" in str(e).lower():
            return S3StorageError(f"{what}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY, a profile, or s3.access_key_id)",
                                  451)
        return S3StorageError(f"{what}: refused by the S3 client ({e})", 451)
    raise e


def _not_found(e: BaseException) -> bool:
    return service_code(e)[0] in ("NoSuchKey", "NotFound")


def _no_upload(e: BaseException) -> bool:
    return service_code(e)[0] in ("NoSuchUpload", "NoSuchKey", "NotFound")


@dataclass(frozen=True, slots=True)
class Kept:
    """An interrupted upload kept to be resumed: the service's multipart upload
    ``upload_id`` for ``key`` and its completed parts 1..n in order (number -> ETag,
    as ListParts reports them), ``size`` bytes in all. The next part is n + 1."""

    key: str
    upload_id: str
    etags: dict[int, str]
    size: int


# -- the backend: one per server -------------------------------------------------------------

class S3Backend:
    """The client (its connection pool) and the settings, shared by every session."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.client = make_client(settings)
        #: the service keeps ``dir/`` marker objects (None: not known yet). rclone serve
        #: s3 maps keys to files and turns a marker into a file named ``dir``: found out
        #: at the first MKD, after which new directories live in the session only
        self.markers: bool | None = None
        #: aborts and keeps of failed uploads still running (owned: awaited at close)
        self.pending: set[asyncio.Task[Any]] = set()
        #: where the markers of kept uploads live (see :class:`Kept`)
        self.state = "/".join(p for p in (settings.prefix, STATE) if p) + "/"
        #: keys whose kept upload a session of this process is continuing (a second
        #: resume of the same name meanwhile is refused, as the disk's flock does)
        self.resuming: set[str] = set()
        #: keys whose failed upload is being kept right now: a look-up waits for it
        self.keeping: dict[str, asyncio.Task[Any]] = {}
        #: keys this process kept an upload of (a later STOR of the name drops it)
        self.kept_here: set[str] = set()

    def home(self, home: str) -> S3Storage:
        """One user's view: ``home`` is a prefix relative to s3.prefix ("" for it)."""
        base = "/".join(p for p in (self.settings.prefix, clean_prefix(home)) if p)
        return S3Storage(self, base + "/" if base else "")

    async def check(self) -> None:
        """At start: the bucket exists and the keys may list it. Raises
        :class:`S3StorageError` naming the cause (the caller adds the fix)."""
        s = self.settings
        try:
            it = self.client._list_objects(s.bucket, delimiter="/", max_keys=1,
                                           prefix=(s.prefix + "/") if s.prefix else "")
            async for _ in it:
                break
        except BaseException as e:
            raise _why(f"bucket {s.bucket!r}", e, s) from None

    def own(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the backend's (awaited at close), not a session's:
        a session that ends meanwhile does not cut it short."""
        task = asyncio.get_running_loop().create_task(coro)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    # -- kept uploads ----------------------------------------------------------------------

    def marker(self, key: str) -> str:
        """The marker key of the kept upload of ``key`` (a hash: any key length fits)."""
        return self.state + hashlib.sha256(key.encode("utf-8", "surrogateescape")
                                           ).hexdigest()[:40]

    async def _read_marker(self, key: str) -> tuple[str, str | None] | None:
        """(upload id, ETag of the object it replaces or None) of the kept upload of
        ``key``, or None when there is none."""
        try:
            resp = await self.client.get_object(self.settings.bucket, self.marker(key))
            try:
                body = await resp.read()
            finally:
                resp.close()
        except BaseException as e:
            if _not_found(e):
                return None
            raise _why(f"the kept upload of {key}", e, self.settings) from None
        try:
            state = json.loads(body)
            named, upload_id, replaces = state["key"], state["upload_id"], state["replaces"]
        except (ValueError, KeyError, TypeError):
            await self._delete_marker(key)  # not ours, or cut off: nothing to resume
            return None
        if named != key or not isinstance(upload_id, str):
            return None
        return upload_id, replaces if isinstance(replaces, str) else None

    async def _etag(self, key: str, what: str) -> str | None:
        """The ETag of the object ``key`` (None: there is none)."""
        try:
            obj = await self.client.stat_object(self.settings.bucket, key)
        except BaseException as e:
            if _not_found(e):
                return None
            raise _why(what, e, self.settings) from None
        return obj.etag or ""

    async def _delete_marker(self, key: str) -> None:
        self.kept_here.discard(key)
        with contextlib.suppress(Exception):
            await self.client.remove_object(self.settings.bucket, self.marker(key))

    async def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.client._abort_multipart_upload(self.settings.bucket, key, upload_id)

    async def find_kept(self, key: str, what: str) -> Kept | None:
        """The kept upload of ``key`` that a resume can continue, or None. A stale one
        (the object of that name changed since it was kept: stored, replaced or deleted;
        its multipart upload is gone; it holds no whole part) is dropped on the way."""
        keeping = self.keeping.get(key)
        if keeping is not None:  # this process is writing its marker: wait for that
            await asyncio.wait([keeping])
        found = await self._read_marker(key)
        if found is None:
            return None
        upload_id, replaces = found
        # no clocks: the object it would replace must be the one it found when kept
        if await self._etag(key, what) != replaces:
            await self.drop_kept(key, upload_id)
            return None
        etags: dict[int, str] = {}
        size = 0
        number: int | None = None
        try:
            while True:
                r = await self.client._list_parts(self.settings.bucket, key, upload_id,
                                                  part_number_marker=(
                                                      str(number) if number else None))
                for p in r.parts:
                    if p.part_number == len(etags) + 1 and p.size == part_size(p.part_number):
                        etags[p.part_number] = p.etag
                        size += p.size
                if not r.is_truncated or not r.parts:
                    break
                number = r.parts[-1].part_number
        except BaseException as e:
            if not _no_upload(e):
                raise _why(what, e, self.settings) from None
            etags = {}
        if not etags:
            await self.drop_kept(key, upload_id)
            return None
        return Kept(key, upload_id, etags, size)

    async def keep(self, key: str, upload_id: str) -> None:
        """Write the marker of a kept upload, with the ETag of the object it would
        replace (a later change of that object makes it stale); one kept before for the
        key (another upload) is aborted: the newest interruption is the one to resume."""
        old = await self._read_marker(key)
        replaces = await self._etag(key, key)
        body = json.dumps({"key": key, "upload_id": upload_id, "replaces": replaces}
                          ).encode()
        import io

        try:
            await self.client.put_object(self.settings.bucket, self.marker(key),
                                         io.BytesIO(body), len(body),
                                         content_type="application/json")
        except BaseException as e:
            raise _why(f"the kept upload of {key}", e, self.settings) from None
        self.kept_here.add(key)
        if old is not None and old[0] != upload_id:
            await self._abort(key, old[0])

    async def drop_kept(self, key: str, upload_id: str | None = None) -> bool:
        """Abort the kept upload of ``key`` and remove its marker; True if there was
        one (``upload_id``: it is known already)."""
        if upload_id is None:
            found = await self._read_marker(key)
            if found is None:
                return False
            upload_id = found[0]
        await self._abort(key, upload_id)
        await self._delete_marker(key)
        return True

    async def sweep(self, max_age: float) -> int:
        """Abort the kept uploads whose marker is older than ``max_age`` seconds (all of
        them when it is 0), but those a session of this process is continuing. Returns
        how many went. Lists only the state prefix: its cost follows the kept uploads,
        not the bucket."""
        now = time.time()
        old: list[str] = []
        try:
            async for o in self.client._list_objects(self.settings.bucket,
                                                     prefix=self.state, max_keys=PAGE):
                when = o.last_modified.timestamp() if o.last_modified else 0.0
                if not max_age or now - when > max_age:
                    old.append(o.object_name or "")
        except BaseException as e:
            raise _why("the kept uploads", e, self.settings) from None
        gone = 0
        for mkey in old:
            try:
                resp = await self.client.get_object(self.settings.bucket, mkey)
                try:
                    state = json.loads(await resp.read())
                finally:
                    resp.close()
                key, upload_id = str(state["key"]), str(state["upload_id"])
            except Exception:
                with contextlib.suppress(Exception):
                    await self.client.remove_object(self.settings.bucket, mkey)
                continue
            if key in self.resuming or self.marker(key) != mkey:
                continue
            await self._abort(key, upload_id)
            await self._delete_marker(key)
            gone += 1
        return gone

    async def close(self) -> None:
        if self.pending:
            await asyncio.wait(self.pending, timeout=10)
        await self.client.close_session()


@dataclass(slots=True)
class ObjectReader:
    """A download: ``size`` is the object's, ``offset`` where the data starts."""

    size: int
    offset: int
    response: Any | None

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.response is None:
            return
        async for chunk in self.response.content.iter_any():
            yield chunk

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None


class S3Storage:
    """One user's home: virtual paths under the key prefix ``base`` ("" or "x/y/")."""

    __slots__ = ("backend", "base", "made")

    def __init__(self, backend: S3Backend, base: str) -> None:
        self.backend = backend
        self.base = base
        #: directories MKD made in this session on a service that keeps no markers: they
        #: exist for this session until a file is stored in them (then for everyone)
        self.made: set[str] = set()

    # -- names -----------------------------------------------------------------------

    @property
    def home(self) -> str:
        """What the session logs as the home."""
        return f"s3://{self.backend.settings.bucket}/{self.base}"

    def key(self, vpath: str) -> str:
        """The key of a file (``/a/b`` -> ``base + "a/b"``); a name in the reserved
        pattern of upload files is refused (553), as on disk."""
        refuse_reserved(vpath)
        return self.base + vpath.strip("/")

    def dir_prefix(self, vpath: str) -> str:
        """The prefix of a directory (``/a`` -> ``base + "a/"``; ``/`` -> ``base``)."""
        refuse_reserved(vpath)
        inner = vpath.strip("/")
        return self.base + inner + "/" if inner else self.base

    def _fail(self, what: str, e: BaseException) -> S3StorageError:
        return _why(what, e, self.backend.settings)

    @property
    def _c(self) -> Minio:
        return self.backend.client

    @property
    def _bucket(self) -> str:
        return self.backend.settings.bucket

    # -- metadata --------------------------------------------------------------------

    async def _head(self, vpath: str) -> Any | None:
        """The object at ``vpath``'s key (None when there is none)."""
        if vpath == "/":
            return None
        try:
            return await self._c.stat_object(self._bucket, self.key(vpath))
        except BaseException as e:
            if _not_found(e):
                return None
            raise self._fail(vpath, e) from None

    async def is_dir(self, vpath: str) -> bool:
        """A directory: the home, one MKD made here, or a prefix some key starts with
        (its marker included)."""
        if vpath == "/" or vpath in self.made:
            return True
        try:
            async for _ in self._c._list_objects(self._bucket, prefix=self.dir_prefix(vpath),
                                                  max_keys=1):
                return True
        except BaseException as e:
            raise self._fail(vpath, e) from None
        return False

    async def facts(self, vpath: str) -> FileFacts:
        """An object's facts (HEAD), or a directory's; no such name: 550."""
        name = paths.basename(vpath) or "/"
        obj = await self._head(vpath)
        if obj is not None:
            return _object_facts(name, obj.size or 0, obj.last_modified, obj.etag)
        if await self.is_dir(vpath):
            return FileFacts(name, _DIR_MODE, 0, 0.0, 2)
        raise S3StorageError(f"{vpath}: no such file or directory")

    async def listdir(self, vpath: str) -> AsyncIterator[list[FileFacts]]:
        """The entries of a directory, a page (up to 1,000) at a time, as the service
        sends them: files are keys, subdirectories common prefixes (markers included);
        a prefix the service repeats on later pages (rclone does) is given once."""
        prefix = self.dir_prefix(vpath)
        seen: set[str] = set()
        page: list[FileFacts] = []
        try:
            async for obj in self._c._list_objects(self._bucket, prefix=prefix,
                                                   delimiter="/", max_keys=PAGE,
                                                   encoding_type="url"):
                name = (obj.object_name or "")[len(prefix):]
                if is_temp_name(name.rstrip("/")):
                    continue  # the kept uploads' state (STATE), as on disk
                if obj.is_dir:
                    name = name.rstrip("/")
                    if not name or name in seen:
                        continue  # the directory's own marker, or a repeated prefix
                    seen.add(name)
                    page.append(FileFacts(name, _DIR_MODE, 0, 0.0, 2))
                elif name:
                    page.append(_object_facts(name, obj.size or 0, obj.last_modified,
                                              obj.etag))
                if len(page) >= PAGE:
                    yield page
                    page = []
        except BaseException as e:
            if isinstance(e, GeneratorExit | asyncio.CancelledError):
                raise
            raise self._fail(vpath, e) from None
        for made in sorted(self.made):
            if paths.parent(made) == vpath and paths.basename(made) not in seen:
                page.append(FileFacts(paths.basename(made), _DIR_MODE, 0, 0.0, 2))
        if page:
            yield page

    async def is_empty_dir(self, vpath: str) -> bool:
        prefix = self.dir_prefix(vpath)
        try:
            async for obj in self._c._list_objects(self._bucket, prefix=prefix,
                                                   delimiter="/", max_keys=2):
                if obj.object_name != prefix:
                    return False
        except BaseException as e:
            raise self._fail(vpath, e) from None
        return True

    # -- changes -------------------------------------------------------------------

    async def mkdir(self, vpath: str) -> None:
        if vpath == "/" or await self.is_dir(vpath):
            raise S3StorageError(f"{vpath}: directory exists")
        if await self._head(vpath) is not None:
            raise S3StorageError(f"{vpath}: a file of that name exists")
        b = self.backend
        if b.markers is False:
            self.made.add(vpath)
            return
        marker = self.dir_prefix(vpath)
        await self._put_bytes(vpath, marker, b"")
        if b.markers is None:
            # a service that keeps markers has no object at the name without the slash;
            # one that maps keys to files made the marker a file of that name
            b.markers = await self._head(vpath) is None
            if not b.markers:
                with contextlib.suppress(S3StorageError):
                    await self._delete_key(vpath, self.key(vpath))
                self.made.add(vpath)

    async def rmdir(self, vpath: str) -> None:
        if vpath == "/":
            raise S3StorageError("the home directory cannot be removed")
        if vpath in self.made:
            if not await self.is_empty_dir(vpath):
                raise S3StorageError(f"{vpath}: directory not empty")
            self.made.discard(vpath)
            return
        if not await self.is_dir(vpath):
            raise S3StorageError(f"{vpath}: no such directory")
        if not await self.is_empty_dir(vpath):
            raise S3StorageError(f"{vpath}: directory not empty")
        await self._delete_key(vpath, self.dir_prefix(vpath))

    async def remove(self, vpath: str) -> None:
        """Delete the object and any interrupted upload kept for that name (only such an
        upload there: it is removed), as on disk."""
        key = self.key(vpath)
        if await self._head(vpath) is None:
            if await self.backend.drop_kept(key):
                return
            if await self.is_dir(vpath):
                raise S3StorageError(f"{vpath} is a directory (use RMD)")
            raise S3StorageError(f"{vpath}: no such file")
        await self._delete_key(vpath, key)
        await self.backend.drop_kept(key)

    async def exists(self, vpath: str) -> None:
        """RNFR: the name exists (a file or a directory), else 550."""
        if await self._head(vpath) is None and not await self.is_dir(vpath):
            raise S3StorageError(f"{vpath}: no such file or directory")

    async def rename(self, src: str, dst: str) -> None:
        """Copy then delete: not atomic (a failure in between leaves both). A directory
        moves object by object, and only when it holds at most rename_dir_limit."""
        if src == "/" or dst == "/":
            raise S3StorageError("the home directory cannot be renamed")
        if src == dst:
            return
        obj = await self._head(src)
        if obj is not None:
            if await self.is_dir(dst):
                raise S3StorageError(f"{dst} is a directory")
            await self._copy(src, self.key(src), self.key(dst))
            await self._delete_key(src, self.key(src))
            return
        if not await self.is_dir(src):
            raise S3StorageError(f"{src}: no such file or directory")
        if dst.startswith(src.rstrip("/") + "/"):
            raise S3StorageError(f"{dst} is inside {src}")
        if await self.is_dir(dst) or await self._head(dst) is not None:
            raise S3StorageError(f"{dst} exists")
        limit = self.backend.settings.rename_dir_limit
        keys: list[str] = []
        src_p, dst_p = self.dir_prefix(src), self.dir_prefix(dst)
        try:
            async for o in self._c._list_objects(self._bucket, prefix=src_p, max_keys=PAGE):
                keys.append(o.object_name or "")
                if len(keys) > limit:
                    raise S3StorageError(
                        f"{src} holds more than {limit} objects: object storage renames "
                        "a directory by copying each object (s3.rename_dir_limit)")
        except S3StorageError:
            raise
        except BaseException as e:
            raise self._fail(src, e) from None
        for k in keys:
            await self._copy(src, k, dst_p + k[len(src_p):])
        for k in keys:
            await self._delete_key(src, k)
        if src in self.made:
            self.made.discard(src)
            self.made.add(dst)

    async def set_mtime(self, vpath: str, mtime: float) -> None:
        raise S3StorageError(f"{vpath}: object storage keeps the time an object was "
                             "stored; it cannot be set (MFMT)")

    async def unique_name(self, vdir: str, stem: str) -> str:
        for _ in range(100):
            cand = paths.resolve(vdir, f"{stem}.{secrets.token_hex(4)}")
            if await self._head(cand) is None:
                return cand
        raise S3StorageError("could not find a unique name")

    # -- object primitives -------------------------------------------------------------

    async def _put_bytes(self, what: str, key: str, data: bytes | memoryview) -> None:
        import io

        try:
            await self._c.put_object(self._bucket, key, io.BytesIO(bytes(data)), len(data))
        except BaseException as e:
            raise self._fail(what, e) from None

    async def _delete_key(self, what: str, key: str) -> None:
        try:
            await self._c.remove_object(self._bucket, key)
        except BaseException as e:
            raise self._fail(what, e) from None

    async def _copy(self, what: str, src_key: str, dst_key: str) -> None:
        from miniopy_async.commonconfig import CopySource

        try:
            await self._c.copy_object(self._bucket, dst_key, CopySource(self._bucket,
                                                                        src_key))
        except BaseException as e:
            raise self._fail(what, e) from None

    # -- file data -----------------------------------------------------------------

    async def open_read(self, vpath: str, offset: int = 0) -> ObjectReader:
        """A streamed GET from ``offset`` (a ranged GET when it is not 0)."""
        try:
            resp = await self._c.get_object(self._bucket, self.key(vpath), offset=offset)
        except BaseException as e:
            if _not_found(e) and await self.is_dir(vpath):
                raise S3StorageError(f"{vpath} is not a regular file (a directory)") from None
            if service_code(e)[0] == "InvalidRange":
                obj = await self._head(vpath)
                if obj is not None and offset >= (obj.size or 0):
                    return ObjectReader(obj.size or 0, offset, None)
            raise self._fail(vpath, e) from None
        total = resp.content_length or 0
        crange = resp.headers.get("Content-Range", "")
        if "/" in crange:
            with contextlib.suppress(ValueError):
                total = int(crange.rsplit("/", 1)[1])
        return ObjectReader(total, offset, resp)

    async def kept_size(self, vpath: str) -> int | None:
        """The bytes of the interrupted upload kept for ``vpath`` (where a resume
        starts), or None when there is none."""
        if vpath == "/":
            return None
        kept = await self.backend.find_kept(self.key(vpath), vpath)
        return None if kept is None else kept.size

    async def open_write(self, vpath: str, *, offset: int = 0, append: bool = False,
                         unique: bool = False) -> ObjectUpload:
        """An upload (see :class:`ObjectUpload`). REST ``offset`` + STOR and APPE
        continue the kept upload of the name (at exactly its size: whole parts, as SIZE
        says); with none, APPE to a missing name is a new upload and the rest is refused:
        an object cannot be written into. ``unique`` (STOU): a new upload, always."""
        key = self.key(vpath)
        if vpath == "/":
            raise S3StorageError("/ is a directory")
        b = self.backend
        if unique or not (append or offset):
            # whether the name is a directory is asked while the data arrives (a small
            # upload would otherwise wait for two requests, not one); the upload is
            # refused at its end if it is
            check = asyncio.get_running_loop().create_task(self.is_dir(vpath))
            return ObjectUpload(self, vpath, key, dir_check=check)
        if await self.is_dir(vpath):
            raise S3StorageError(f"{vpath} is a directory")
        kept = await b.find_kept(key, vpath)
        if kept is not None:
            if key in b.resuming:
                raise S3StorageError(f"{vpath} is being uploaded by another session; try "
                                     "again when it has finished", 450)
            if not append and offset != kept.size:
                where = "beyond the end of" if offset > kept.size else "inside"
                raise S3StorageError(
                    f"restart offset {offset} is {where} the interrupted upload of {vpath}, "
                    f"which keeps {kept.size} bytes in whole parts; object storage "
                    f"continues it there only (REST {kept.size})", 554)
            return ObjectUpload(self, vpath, key, kept)
        if await self._head(vpath) is not None:
            verb = "APPE" if append else "REST+STOR"
            raise S3StorageError(
                f"object storage cannot append to {vpath}: an object is written whole, and "
                f"no interrupted upload of it is kept ({verb}); send the whole file with "
                "STOR")
        if append:
            return ObjectUpload(self, vpath, key, dir_check=None)
        raise S3StorageError(f"restart offset {offset}: there is nothing to resume (no file "
                             f"{vpath}, no interrupted upload of it)", 554)

    def stored(self, vpath: str) -> None:
        """A file was stored at ``vpath``: its directories exist for everyone now."""
        p = paths.parent(vpath)
        while p != "/":
            self.made.discard(p)
            p = paths.parent(p)


def _object_facts(name: str, size: int, modified: Any, etag: str | None) -> FileFacts:
    mtime = modified.timestamp() if modified is not None else 0.0
    return FileFacts(name, _FILE_MODE, size, mtime, 1,
                     unique=(etag or "").strip('"')[:32])


class ObjectUpload:
    """An upload in progress: data goes into a part buffer (``buffer()``/``advance()``:
    the data connection receives straight into it), full parts are sent while the next
    one fills; ``commit()`` makes the object, ``discard()`` aborts or keeps it.

    ``kept``: a kept upload to continue (its parts stay, the next one follows them).
    ``dir_check``: whether the name is a directory, still being asked (the upload is
    refused at commit if it is).
    """

    __slots__ = ("store", "vpath", "key", "buf", "filled", "number", "upload_id",
                 "parts", "inflight", "done", "size", "resumed", "sealed", "settled", "first",
                 "dir_check")

    def __init__(self, store: S3Storage, vpath: str, key: str, kept: Kept | None = None,
                 *, dir_check: asyncio.Task[bool] | None = None) -> None:
        self.store, self.vpath, self.key = store, vpath, key
        self.dir_check = dir_check
        self.upload_id: str | None = None
        self.parts: dict[int, str] = {}
        #: bytes of the file so far (a resumed upload starts at the kept size)
        self.size = 0
        #: continuing a kept upload (its marker goes when it completes)
        self.resumed = kept is not None
        if kept is not None:
            self.upload_id, self.parts, self.size = kept.upload_id, dict(kept.etags), kept.size
            store.backend.resuming.add(key)
        self.number = len(self.parts) + 1
        #: the first part this command sends
        self.first = self.number
        # the first buffer starts small and grows to a part: most uploads are small, and
        # a zero-filled 8 MiB bytearray costs more than sending 4 KiB
        self.buf = bytearray(min(FIRST_BUFFER, part_size(self.number)))
        self.filled = 0
        self.inflight: set[asyncio.Task[None]] = set()
        self.done = False
        #: the short last part was sent: what is there cannot be continued
        self.sealed = False
        #: the end of a failed upload (kept or aborted), once discard() started it
        self.settled: asyncio.Task[bool] | None = None

    def buffer(self) -> memoryview:
        """Where the next bytes go (the free end of the current part)."""
        return memoryview(self.buf)[self.filled:]

    async def advance(self, n: int) -> None:
        """``n`` bytes were written into :meth:`buffer`; a full part is sent (waiting
        first while UPLOAD_CONCURRENCY parts are still on their way)."""
        self.filled += n
        self.size += n
        if self.filled == len(self.buf):
            whole = part_size(self.number)
            if len(self.buf) < whole:  # a new, larger buffer (views of the old live on)
                grown = bytearray(min(2 * len(self.buf), whole))
                grown[:self.filled] = self.buf
                self.buf = grown
            else:
                await self._send_part()

    async def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            room = self.buffer()
            n = min(len(room), len(view))
            room[:n] = view[:n]
            view = view[n:]
            await self.advance(n)

    async def _send_part(self) -> None:
        st = self.store
        if self.number > MAX_PARTS:
            raise S3StorageError(f"{self.vpath}: larger than object storage's "
                                 f"{MAX_PARTS} parts allow", 552)
        if self.upload_id is None:
            try:
                self.upload_id = await st._c._create_multipart_upload(st._bucket, self.key,
                                                                       {})
            except BaseException as e:
                raise st._fail(self.vpath, e) from None
        while len(self.inflight) >= UPLOAD_CONCURRENCY:
            await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
            self._reap()
        # the library takes bytes only: one copy of the part, and the buffer goes
        data, number = bytes(self.buf), self.number
        task = asyncio.get_running_loop().create_task(self._upload_part(number, data))
        self.inflight.add(task)
        self.number += 1
        self.buf = bytearray(part_size(self.number))
        self.filled = 0

    def _reap(self) -> None:
        """Raise the first failure of a finished part."""
        for t in [t for t in self.inflight if t.done()]:
            self.inflight.discard(t)
            exc = t.exception()
            if exc is not None:
                raise exc

    async def _upload_part(self, number: int, data: bytes) -> None:
        st = self.store
        assert self.upload_id is not None
        try:
            self.parts[number] = await st._c._upload_part(st._bucket, self.key, data, None,
                                                          self.upload_id, number)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            raise st._fail(self.vpath, e) from None

    async def commit(self) -> None:
        """The upload ended well: the object appears (one PUT, or the multipart upload
        completed), and no kept upload of the name is left behind."""
        from miniopy_async.datatypes import Part

        st = self.store
        b = st.backend
        if self.dir_check is not None and await self.dir_check:
            self.sealed = True  # nothing to keep either
            raise S3StorageError(f"{self.vpath} is a directory")
        if self.upload_id is None:
            await st._put_bytes(self.vpath, self.key, memoryview(self.buf)[:self.filled])
        else:
            if self.filled:
                await self._send_part_tail()
            while self.inflight:
                await asyncio.wait(self.inflight)
                self._reap()
            parts = [Part(n, etag) for n, etag in sorted(self.parts.items())]
            try:
                await st._c._complete_multipart_upload(st._bucket, self.key, self.upload_id,
                                                       parts)
            except BaseException as e:
                raise st._fail(self.vpath, e) from None
        self.done = True
        st.stored(self.vpath)
        if self.resumed:
            await b._delete_marker(self.key)
            b.resuming.discard(self.key)
        elif self.key in b.kept_here:
            b.own(b.drop_kept(self.key))  # an upload this process kept is stale now

    async def _send_part_tail(self) -> None:
        """The last part, shorter than the others (S3 allows that of the last one)."""
        self.sealed = True
        self.buf = self.buf[:self.filled]
        self.filled = len(self.buf)
        await self._send_part()

    def discard(self, *, keep: bool = False) -> bool:
        """The upload failed. ``keep``: keep what reached the service in whole parts to
        be resumed (the parts on their way are waited for, then the marker written);
        otherwise, or when there is no whole part, abort the multipart upload: no
        object appears, the old one stays. Runs in the background, owned by the
        backend (``settled`` is its task; True when kept). Returns whether it keeps."""
        if self.done:
            return False
        self.done = True
        b = self.store.backend
        check = self.dir_check
        if check is not None:
            if check.done():
                keep = keep and not (check.cancelled() or check.exception()
                                     or check.result())
            else:
                check.cancel()
        if self.upload_id is None:
            return False  # nothing reached the service
        if self.resumed and self.number == self.first:
            # a resume that sent no part: the kept upload stays as it was (its data
            # connection failed, say)
            b.resuming.discard(self.key)
            return keep
        keeping = keep and not self.sealed and bool(self.parts or self.inflight)
        if not keeping:
            for t in self.inflight:
                t.cancel()
        task = b.own(self._end(self.upload_id, keeping))
        self.settled = task
        if keeping:
            b.keeping[self.key] = task
        return keeping

    async def _end(self, upload_id: str, keeping: bool) -> bool:
        b = self.store.backend
        try:
            if self.inflight:
                await asyncio.wait(self.inflight)
            if keeping and 1 in self.parts:
                with contextlib.suppress(S3StorageError):
                    await b.keep(self.key, upload_id)
                    return True
            await b._abort(self.key, upload_id)
            if self.resumed:
                await b._delete_marker(self.key)
            return False
        finally:
            self.inflight = set()
            if self.resumed:
                b.resuming.discard(self.key)
            if b.keeping.get(self.key) is asyncio.current_task():
                del b.keeping[self.key]
