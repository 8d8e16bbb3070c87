"""The sans-IO tus core: every header checked, every status right, no I/O."""

from __future__ import annotations

import ast
import base64
import hashlib
import inspect
import json
from pathlib import Path

import pytest

import spoolup.tus.protocol as protocol_module
import spoolup.tus.state as state_module
from spoolup.errors import RequestTooLarge, UnsupportedMediaType, UploadError
from spoolup.tus.protocol import (
    OFFSET_CONTENT_TYPE,
    Checksum,
    ChecksumMismatch,
    Create,
    Delete,
    Head,
    Options,
    Patch,
    Response,
    TusError,
    TusLimits,
    TusProtocol,
    UploadGone,
    UploadNotFound,
    headers_from_asgi,
    http_date,
    is_upload_id,
    parse_metadata,
)
from spoolup.tus.state import UploadInfo

UID = "A" * 22
V = {"tus-resumable": "1.0.0"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def proto(**kw: object) -> TusProtocol:
    return TusProtocol(**kw)  # type: ignore[arg-type]


def read(method: str, upload_id: str | None = None, **headers: str) -> object:
    h = dict(V)
    h.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
    return TusProtocol(limits=TusLimits(max_size=1000)).read_request(method, upload_id, h)


def status_of(method: str, upload_id: str | None = None, **headers: str) -> int:
    with pytest.raises(UploadError) as info:
        read(method, upload_id, **headers)
    return info.value.status


def test_sans_io_modules_import_no_io() -> None:
    banned = {"os", "io", "tempfile", "asyncio", "socket", "pathlib", "time"}
    for module in (protocol_module, state_module):
        tree = ast.parse(Path(inspect.getfile(module)).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & banned, (module.__name__, names)


def test_options_needs_no_version_and_lists_capabilities() -> None:
    p = TusProtocol(limits=TusLimits(max_size=1234))
    assert p.read_request("OPTIONS", None, {}) == Options()
    r = p.options_response()
    assert r.status == 204
    assert r.header("tus-version") == "1.0.0"
    assert r.header("Tus-Max-Size") == "1234"
    ext = r.header("Tus-Extension")
    assert ext is not None
    for name in ("creation", "creation-with-upload", "creation-defer-length", "termination"):
        assert name in ext.split(",")
    assert {"checksum", "expiration", "concatenation"} <= set(ext.split(","))
    assert r.header("Tus-Checksum-Algorithm") == "md5,sha1,sha256,sha512"
    assert r.header("nope") is None


@pytest.mark.parametrize("version", [None, "0.2.2", "", "1.0.1"])
def test_version_mismatch_is_412_with_tus_version(version: str | None) -> None:
    h = {} if version is None else {"tus-resumable": version}
    p = TusProtocol()
    with pytest.raises(TusError) as info:
        p.read_request("HEAD", UID, h)
    assert info.value.status == 412
    r = p.error_response(info.value)
    assert r.status == 412
    assert r.header("Tus-Version") == "1.0.0"
    assert json.loads(r.body)["error"]


def test_error_response_for_head_has_no_body() -> None:
    r = TusProtocol().error_response(UploadNotFound("gone"), head=True)
    assert (r.status, r.body, r.header("content-type")) == (404, b"", None)
    r = TusProtocol().error_response(TusError("x", status=405))
    assert r.header("Allow") == "DELETE, HEAD, OPTIONS, PATCH, POST"


def test_method_override_and_unknown_methods() -> None:
    assert read("POST", UID, x_http_method_override="DELETE") == Delete(UID)
    assert read("POST", UID, x_http_method_override="head") == Head(UID)
    assert status_of("GET", UID) == 405
    assert status_of("POST", UID, x_http_method_override="TRACE") == 405
    assert status_of("POST", UID) == 405
    assert status_of("HEAD", None) == 405


@pytest.mark.parametrize("bad", ["", "x" * 15, "a/b" + "c" * 20, "ü" * 22, "a" * 65])
def test_upload_ids_not_ours_are_404(bad: str) -> None:
    assert not is_upload_id(bad)
    assert status_of("HEAD", bad) == 404


def test_create_with_length_and_metadata() -> None:
    meta = f"filename {b64('a b.txt')},filetype {b64('text/plain')},flag"
    req = read("POST", upload_length="10", upload_metadata=meta)
    assert req == Create(
        length=10,
        metadata=(("filename", b64("a b.txt")), ("filetype", b64("text/plain")), ("flag", "")),
    )


def test_create_defer_length() -> None:
    assert read("POST", upload_defer_length="1") == Create(length=None)
    assert status_of("POST", upload_defer_length="2") == 400
    assert status_of("POST", upload_defer_length="1", upload_length="3") == 400
    assert status_of("POST") == 400


@pytest.mark.parametrize("value", ["-1", "1.5", "", " ", "0x10", "1" * 21, "١٢", "1e3"])
def test_bad_numbers_are_400(value: str) -> None:
    assert status_of("POST", upload_length=value) == 400
    assert status_of("PATCH", UID, upload_offset=value, content_type=OFFSET_CONTENT_TYPE) == 400


def test_length_over_max_size_is_413() -> None:
    with pytest.raises(RequestTooLarge) as info:
        read("POST", upload_length="1001")
    assert info.value.status == 413
    assert "max_size=1000" in info.value.message
    assert read("POST", upload_length="1000") == Create(length=1000)
    assert (
        status_of(
            "PATCH", UID, upload_offset="0", upload_length="1001", content_type=OFFSET_CONTENT_TYPE
        )
        == 413
    )


def test_oversized_header_is_413() -> None:
    p = TusProtocol(limits=TusLimits(max_header_size=10))
    with pytest.raises(RequestTooLarge):
        p.read_request("POST", None, {**V, "upload-length": "1" + " " * 20})


def test_creation_with_upload() -> None:
    req = read("POST", upload_length="10", content_type=OFFSET_CONTENT_TYPE, content_length="4")
    assert req == Create(length=10, body_length=4)
    req = read(
        "POST", upload_length="10", content_type=OFFSET_CONTENT_TYPE, transfer_encoding="chunked"
    )
    assert isinstance(req, Create)
    assert req.body_length == -1
    # An empty body of another type is plain creation; a non-empty one is refused.
    assert read("POST", upload_length="10", content_type="text/plain").body_length is None  # type: ignore[attr-defined]
    assert read("POST", upload_length="10", content_length="0") == Create(length=10)
    assert (
        status_of("POST", upload_length="10", content_type="text/plain", content_length="3") == 415
    )
    assert (
        status_of("POST", upload_length="3", content_type=OFFSET_CONTENT_TYPE, content_length="4")
        == 413
    )
    assert (
        status_of(
            "POST",
            upload_defer_length="1",
            content_type=OFFSET_CONTENT_TYPE,
            content_length="1001",
        )
        == 413
    )


def test_metadata_parsing_and_bounds() -> None:
    limits = TusLimits(max_metadata_size=100, max_metadata_pairs=3)
    assert parse_metadata("", limits) == ()
    assert parse_metadata(" a  ", limits) == (("a", ""),)
    assert parse_metadata("a YQ==, b", limits) == (("a", "YQ=="), ("b", ""))
    for bad in ("a !!!", "a YQ== x", "a,a", ",", "k\u00e9y YQ==", "a YQ"):
        with pytest.raises(TusError):
            parse_metadata(bad, limits)
    with pytest.raises(RequestTooLarge, match="max_metadata_pairs"):
        parse_metadata("a,b,c,d", limits)
    with pytest.raises(RequestTooLarge, match="max_metadata_size"):
        parse_metadata("a " + "QUFB" * 30, limits)


def test_concatenation_headers() -> None:
    assert read("POST", upload_length="5", upload_concat="partial") == Create(
        length=5, concat="partial"
    )
    other = "B" * 22
    urls = (f"/tus/{UID}", f"http://h:1/tus/{other}/?x#y")
    req = read("POST", upload_concat="final;" + " ".join(urls))
    assert req == Create(length=None, concat="final", parts=urls)
    assert isinstance(req, Create)
    assert TusProtocol().concat_ids(req.parts, "/tus", "H:1") == (UID, other)
    # Only this server's own upload paths: not another host, not any path ending in an id.
    for url in (
        f"http://evil:1/tus/{UID}",
        f"/elsewhere/{UID}",
        f"/tus/x/{UID}",
        f"ftp://h:1/tus/{UID}",
        f"//h:1/tus/{UID}",
        f"http://h:1/tus/{UID}/more",
    ):
        with pytest.raises(TusError, match="not an upload of this server"):
            TusProtocol().concat_ids([url], "/tus", "h:1")
    # A partial upload may appear once.
    assert status_of("POST", upload_concat=f"final;/tus/{UID} http://h:1/tus/{UID}") == 400
    assert status_of("POST", upload_concat="final;") == 400
    assert status_of("POST", upload_concat="final; /tus/../etc") == 400
    assert status_of("POST", upload_concat="bogus") == 400
    assert status_of("POST", upload_concat=f"final;/tus/{UID}", upload_length="3") == 400
    assert status_of("POST", upload_concat=f"final;/tus/{UID}", upload_defer_length="1") == 400
    assert (
        status_of(
            "POST",
            upload_concat=f"final;/tus/{UID}",
            content_type=OFFSET_CONTENT_TYPE,
            content_length="2",
        )
        == 403
    )
    p = TusProtocol(limits=TusLimits(max_concat_parts=2))
    with pytest.raises(RequestTooLarge, match="max_concat_parts"):
        p.read_request("POST", None, {**V, "upload-concat": f"final;{UID} {other} {UID}"})


def test_patch_reading() -> None:
    sha = hashlib.sha1(b"abc").digest()
    req = read(
        "PATCH",
        UID,
        content_type=OFFSET_CONTENT_TYPE + "; x=y",
        upload_offset="5",
        content_length="3",
        upload_checksum="sha1 " + base64.b64encode(sha).decode(),
    )
    assert req == Patch(upload_id=UID, offset=5, body_length=3, checksum=Checksum("sha1", sha))
    req = read(
        "PATCH",
        UID,
        content_type=OFFSET_CONTENT_TYPE,
        upload_offset="0",
        transfer_encoding="chunked",
        upload_length="9",
    )
    assert req == Patch(upload_id=UID, offset=0, length=9, body_length=None)
    assert status_of("PATCH", UID, upload_offset="0") == 415
    assert status_of("PATCH", UID, upload_offset="0", content_type="text/plain") == 415
    assert status_of("PATCH", UID, content_type=OFFSET_CONTENT_TYPE) == 400


@pytest.mark.parametrize(
    "value",
    ["sha1", "crc32 AAAA", "sha1 !!!", "sha1 " + base64.b64encode(b"short").decode(), "a b c"],
)
def test_bad_checksum_headers_are_400(value: str) -> None:
    assert (
        status_of(
            "PATCH", UID, content_type=OFFSET_CONTENT_TYPE, upload_offset="0", upload_checksum=value
        )
        == 400
    )


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
def test_checksum_verify(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"hello").digest()
    c = Checksum(algorithm, digest)
    h = c.hasher()
    h.update(b"hel")
    h.update(b"lo")
    c.verify(h)
    h = c.hasher()
    h.update(b"hellO")
    with pytest.raises(ChecksumMismatch) as info:
        c.verify(h)
    assert info.value.status == 460


def info(**kw: object) -> UploadInfo:
    base: dict[str, object] = {"id": UID, "length": 10}
    base.update(kw)
    return UploadInfo(**base)  # type: ignore[arg-type]


def patch(offset: int = 0, **kw: object) -> Patch:
    return Patch(upload_id=UID, offset=offset, **kw)  # type: ignore[arg-type]


def test_check_patch() -> None:
    p = TusProtocol(limits=TusLimits(max_size=100))
    assert p.check_patch(info(offset=3), patch(3, body_length=7), 0) is None
    with pytest.raises(TusError) as e:
        p.check_patch(info(offset=3), patch(2), 0)
    assert e.value.status == 409
    with pytest.raises(RequestTooLarge) as e2:
        p.check_patch(info(offset=3), patch(3, body_length=8), 0)
    assert "Upload-Length=10" in e2.value.message
    with pytest.raises(TusError) as e:
        p.check_patch(info(concat="final"), patch(0), 0)
    assert e.value.status == 403
    with pytest.raises(UploadGone):
        p.check_patch(info(expires=5.0), patch(0), 5.0)
    # A finished upload does not expire.
    assert p.check_patch(info(offset=10, expires=5.0), patch(10, body_length=0), 9.0) is None


def test_check_patch_deferred_length() -> None:
    p = TusProtocol(limits=TusLimits(max_size=100))
    deferred = info(length=None, offset=4)
    assert p.check_patch(deferred, patch(4, body_length=96), 0) is None
    with pytest.raises(RequestTooLarge, match="max_size=100"):
        p.check_patch(deferred, patch(4, body_length=97), 0)
    assert p.check_patch(deferred, patch(4, length=8, body_length=4), 0) == 8
    with pytest.raises(RequestTooLarge):
        p.check_patch(deferred, patch(4, length=8, body_length=5), 0)
    with pytest.raises(TusError):
        p.check_patch(deferred, patch(4, length=3), 0)
    assert p.check_patch(info(offset=4), patch(4, length=10), 0) is None
    with pytest.raises(TusError):
        p.check_patch(info(offset=4), patch(4, length=11), 0)
    assert p.room(deferred) == 96
    assert p.room(info(offset=4)) == 6


def test_check_final_parts() -> None:
    p = TusProtocol(limits=TusLimits(max_size=15))
    a = info(id="a" * 22, offset=10, concat="partial")
    b = info(id="b" * 22, length=5, offset=5, concat="partial")
    assert p.check_final_parts([a, b], 0) == 15
    with pytest.raises(RequestTooLarge):
        p.check_final_parts([a, b, b], 0)
    with pytest.raises(TusError, match="not a partial"):
        p.check_final_parts([info(offset=10)], 0)
    with pytest.raises(TusError, match="not finished"):
        p.check_final_parts([info(offset=3, concat="partial")], 0)
    with pytest.raises(UploadGone):
        p.check_final_parts([info(offset=3, concat="partial", expires=1.0)], 2.0)


def test_responses() -> None:
    p = TusProtocol(expiry=60)
    assert p.expires_at(100.0) == 160.0
    assert TusProtocol(expiry=None).expires_at(1.0) is None
    up = info(offset=4, expires=86400.0, metadata=(("filename", b64("x")), ("flag", "")))
    r = p.created_response(up, "/tus/" + UID, with_body=True)
    assert r.status == 201
    assert r.header("Location") == "/tus/" + UID
    assert r.header("Upload-Offset") == "4"
    assert r.header("Upload-Expires") == "Fri, 02 Jan 1970 00:00:00 GMT"
    assert p.created_response(up, "/x", with_body=False).header("Upload-Offset") is None
    h = p.head_response(up)
    assert h.status == 200
    assert h.header("Upload-Offset") == "4"
    assert h.header("Upload-Length") == "10"
    assert h.header("Upload-Metadata") == f"filename {b64('x')},flag"
    assert h.header("Cache-Control") == "no-store"
    h = p.head_response(info(length=None, concat="partial"))
    assert h.header("Upload-Defer-Length") == "1"
    assert h.header("Upload-Concat") == "partial"
    assert h.header("Upload-Expires") is None
    final = info(concat="final", offset=0, part_urls=("/tus/a", "/tus/b"))
    h = p.head_response(final)
    assert h.header("Upload-Offset") is None
    assert h.header("Upload-Concat") == "final;/tus/a /tus/b"
    final.offset = 10
    assert p.head_response(final).header("Upload-Offset") == "10"
    r = p.patched_response(info(offset=10, expires=1.0))
    assert (r.status, r.header("Upload-Offset"), r.header("Upload-Expires")) == (204, "10", None)
    assert p.deleted_response() == Response(
        204, (("Tus-Resumable", "1.0.0"), ("Cache-Control", "no-store"))
    )
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_cors() -> None:
    assert TusProtocol().cors_headers("http://a", preflight=True) == ()  # none by default
    any_origin = TusProtocol(allow_origins=("*",))
    assert any_origin.cors_headers(None, preflight=False) == ()
    pre = dict(any_origin.cors_headers("http://a", preflight=True))
    assert pre["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in pre["Access-Control-Allow-Methods"]
    for name in ("Upload-Offset", "Upload-Checksum", "Tus-Resumable", "X-HTTP-Method-Override"):
        assert name in pre["Access-Control-Allow-Headers"]
    simple = dict(any_origin.cors_headers("http://a", preflight=False))
    assert "Location" in simple["Access-Control-Expose-Headers"]
    assert "Upload-Offset" in simple["Access-Control-Expose-Headers"]
    only = TusProtocol(allow_origins=("http://a",))
    assert dict(only.cors_headers("http://a", preflight=False))["Vary"] == "Origin"
    assert only.cors_headers("http://b", preflight=True) == ()


def test_headers_from_asgi() -> None:
    assert headers_from_asgi([(b"X-A", b"1"), (b"x-a", b"2"), (b"B", b"\xe9")]) == {
        "x-a": "1, 2",
        "b": "\u00e9",
    }


def test_limits_validation() -> None:
    with pytest.raises(ValueError, match="max_size"):
        TusLimits(max_size=-1)
    with pytest.raises(ValueError, match="max_concat_parts"):
        TusLimits(max_concat_parts=True)


def test_errors_are_upload_errors() -> None:
    assert issubclass(TusError, UploadError)
    assert issubclass(UnsupportedMediaType, UploadError)
    assert proto().limits.max_size == 10 * 1024**3
