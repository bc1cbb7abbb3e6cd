"""Wire codec: msgpack (msgspec) frames whose ndarrays and torch tensors travel as raw side buffers.

Frame layout (little endian)::

    u64 body_len | u32 payload_len | u32 nbuf | u8 kind | i64 to | i64 corr | u16 tag_len | tag (utf-8)
    | payload (msgpack) | u64 len[nbuf] | pad | buf0 | pad | buf1 ...

``tag`` names the payload's registered class (empty = plain msgpack values). Inside the payload an ndarray/tensor is an ext record ``(buffer index, dtype, shape)`` and an
`ActorRef` is an ext record ``(node_id, actor_id, name)``. Buffers start 64-byte aligned within the body.
No pickle anywhere: decoding only builds registered Structs, msgpack values, arrays and refs.
"""

from __future__ import annotations

import importlib
import struct
import sys
from collections.abc import Callable
from typing import Any, final

import msgspec

from ._errors import CodecError
from ._ref import ActorRef
from ._registry import _BY_CLASS, registered_class

__all__ = ["ALIGN", "HEADER", "Codec", "UndecodableFrame"]

HEADER = struct.Struct("<QIIBqqH")
"""body_len (bytes after this u64), payload_len, nbuf, kind, to, corr, tag_len."""
_BODY = struct.Struct("<IIBqqH")
ALIGN = 64
EXT_REF, EXT_NDARRAY, EXT_TENSOR = 1, 2, 3
_ZERO_HEADER = bytes(HEADER.size)
_small = msgspec.msgpack.Encoder()
_plain = msgspec.msgpack.Decoder()


_TAG_BYTES: dict[type, bytes] = {}


def _tag_bytes(msg: Any) -> bytes:
    """The wire tag of ``type(msg)`` (cached): its registered tag, or b"" for plain msgpack values."""
    cls = type(msg)
    tag = _BY_CLASS.get(cls)
    if tag is None and isinstance(msg, msgspec.Struct):
        raise CodecError(
            f"{cls.__module__}:{cls.__qualname__} is not a registered message; decorate it with "
            "@actors.message so both processes can decode it"
        )
    encoded = (tag or "").encode()
    if tag is not None:
        _TAG_BYTES[cls] = encoded
    return encoded


def _dec_hook(kind: type, obj: Any) -> Any:
    if isinstance(obj, kind):
        return obj
    raise NotImplementedError(f"cannot decode a {type(obj).__name__} as {kind!r}")


class UndecodableFrame(CodecError):
    """A frame whose header decoded but whose payload did not; carries the header so askers can be failed."""

    def __init__(self, kind: int, to: int, corr: int, text: str) -> None:
        super().__init__(text)
        self.kind, self.to, self.corr = kind, to, corr


RefResolver = Callable[[str, int, "str | None"], ActorRef]


@final
class Codec:
    """Encodes frames into a write batch and decodes received frame bodies. One per link (not shared)."""

    def __init__(self, resolve_ref: RefResolver) -> None:
        self._resolve_ref = resolve_ref
        self._out: list[memoryview] = []
        self._in: list[memoryview] = []
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._any = msgspec.msgpack.Decoder(ext_hook=self._ext_hook)
        self._typed: dict[bytes, msgspec.msgpack.Decoder[Any]] = {}

    # -- encode ----------------------------------------------------------------------------------------
    def write_frame(self, chunks: list[Any], tail: bytearray, kind: int, to: int, corr: int, msg: Any) -> bytearray:
        """Append one frame to the batch ``chunks + [tail]``; returns the tail to keep appending to.

        NOTE: array/tensor buffers are referenced, not copied: they must not change until the batch is
        written (the transport copies what the kernel does not take at once).
        """
        cls = type(msg)
        tag = _TAG_BYTES.get(cls)
        if tag is None:
            tag = _tag_bytes(msg)
        start = len(tail)
        payload_at = start + HEADER.size + len(tag)
        tail += _ZERO_HEADER
        tail += tag
        bufs: list[memoryview] = []
        self._out = bufs
        try:
            self._encoder.encode_into(msg, tail, payload_at)
        except Exception as exc:
            del tail[start:]
            if isinstance(exc, CodecError):
                raise
            raise CodecError(f"cannot encode {cls.__qualname__} for the wire: {exc}") from exc
        payload_len = len(tail) - payload_at
        if not bufs:
            HEADER.pack_into(tail, start, len(tail) - start - 8, payload_len, 0, kind, to, corr, len(tag))
            return tail
        tail += struct.pack(f"<{len(bufs)}Q", *(b.nbytes for b in bufs))
        body_len = len(tail) - start - 8
        pad = -body_len % ALIGN
        tail += bytes(pad)
        body_len += pad
        chunks.append(tail)
        for i, buf in enumerate(bufs):
            chunks.append(buf)
            body_len += buf.nbytes
            pad = -body_len % ALIGN
            if pad and i + 1 < len(bufs):
                chunks.append(bytes(pad))
                body_len += pad
        HEADER.pack_into(tail, start, body_len, payload_len, len(bufs), kind, to, corr, len(tag))
        return bytearray()

    def _enc_hook(self, obj: Any) -> Any:
        if isinstance(obj, ActorRef):
            return msgspec.msgpack.Ext(EXT_REF, _small.encode((obj.node_id, obj.actor_id, obj.name)))
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray):
            if obj.dtype.hasobject or obj.dtype.fields is not None:
                raise CodecError(f"ndarray dtype {obj.dtype} cannot travel as raw bytes; use a plain dtype")
            arr = np.ascontiguousarray(obj)
            return self._buffer(EXT_NDARRAY, memoryview(arr.reshape(-1).view(np.uint8)), arr.dtype.str, arr.shape)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            t = obj.detach()
            if t.device.type != "cpu":
                t = t.cpu()  # NOTE: a device-to-host copy; move KV through pinned buffers upstream if hot
            t = t.contiguous()
            raw = t.reshape(-1).view(torch.uint8).numpy()
            return self._buffer(EXT_TENSOR, memoryview(raw), str(t.dtype).removeprefix("torch."), tuple(t.shape))
        raise NotImplementedError(f"{type(obj).__qualname__} is not msgpack-encodable; send a registered Struct")

    def _buffer(self, code: int, view: memoryview, dtype: str, shape: tuple[int, ...]) -> msgspec.msgpack.Ext:
        index = len(self._out)
        self._out.append(view)
        return msgspec.msgpack.Ext(code, _small.encode((index, dtype, shape)))

    # -- decode ----------------------------------------------------------------------------------------
    def decode(self, body: memoryview, owned: bool) -> tuple[int, int, int, Any]:
        """Decode one frame body into ``(kind, to, corr, message)``.

        `owned` says whether `body` stays valid after this call; if not, side buffers are copied out.
        """
        payload_len, nbuf, kind, to, corr, tag_len = _BODY.unpack_from(body, 0)
        offset = _BODY.size + tag_len
        tag = bytes(body[_BODY.size : offset])
        payload = body[offset : offset + payload_len]
        if nbuf:
            if not owned:
                body = memoryview(bytearray(body))
                payload = body[offset : offset + payload_len]
            offset += payload_len
            lens = struct.unpack_from(f"<{nbuf}Q", body, offset)
            offset += 8 * nbuf
            self._in = views = []
            for size in lens:
                offset += -offset % ALIGN
                views.append(body[offset : offset + size])
                offset += size
        try:
            return kind, to, corr, self._payload(tag, payload)
        except (CodecError, msgspec.DecodeError, ValueError, TypeError) as exc:
            raise UndecodableFrame(kind, to, corr, f"{tag.decode() or 'plain'} payload: {exc}") from exc
        finally:
            if nbuf:
                self._in = []

    def _payload(self, tag: bytes, payload: memoryview) -> Any:
        if not tag:
            return self._any.decode(payload)
        decoder = self._typed.get(tag)
        if decoder is None:
            cls = registered_class(tag.decode())
            decoder = msgspec.msgpack.Decoder(cls, ext_hook=self._ext_hook, dec_hook=_dec_hook)
            self._typed[tag] = decoder
        return decoder.decode(payload)

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code == EXT_REF:
            node_id, actor_id, name = _plain.decode(data)
            return self._resolve_ref(node_id, actor_id, name)
        index, dtype, shape = _plain.decode(data)
        buf = self._in[index]
        if code == EXT_NDARRAY:
            import numpy as np

            return np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape)
        if code == EXT_TENSOR:
            # NOTE: torch is loaded only when a tensor actually arrives, never at import of `actors`.
            torch = sys.modules.get("torch") or importlib.import_module("torch")
            kind = getattr(torch, dtype)
            if buf.nbytes == 0:
                return torch.empty(shape, dtype=kind)
            return torch.frombuffer(buf, dtype=kind).reshape(shape)
        raise CodecError(f"unknown msgpack ext code {code}")
