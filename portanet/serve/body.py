"""Request bodies turned into requests, bounded before any large allocation.

The declared sizes are checked before the work they would cost: a binary request's JSON header
(a few hundred bytes) is inflated and parsed first, its declared shapes checked against the
element cap, and only the declared number of tensor bytes is then inflated; a JSON body is
counted (an upper bound of its values, at memchr speed) before it is parsed. Decompression
checks the gzip trailer and reads every member of a multi-member gzip. Everything here is
synchronous and pure, so the app runs it in a thread, off the event loop.
"""

from __future__ import annotations

import math
import zlib

from portanet.serve.json_tensors import count_byte, loads
from portanet.serve.protocol import InferRequest, ProtocolError, parse_infer_request


def too_large(what: str, limit: int, got: str, flag: str) -> ProtocolError:
    """413 naming the limit and the flag that raises it."""
    return ProtocolError(f"expected {what} of at most {limit:,}, got {got} (raise {flag})", 413)


class Inflater:
    """Incremental gzip/deflate reader of a request body, every gzip member in turn."""

    def __init__(self, body: bytes, encoding: str) -> None:
        if encoding not in ("gzip", "deflate", "x-gzip"):
            raise ProtocolError(
                f"expected Content-Encoding gzip, deflate or identity, got {encoding!r:.40}", 415
            )
        self.encoding = "gzip" if encoding == "x-gzip" else encoding
        self._wbits = 16 + zlib.MAX_WBITS if self.encoding == "gzip" else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(self._wbits)
        self._source = body

    def read(self, count: int) -> bytes:
        """Up to ``count`` decompressed bytes (fewer only at the end of the body)."""
        parts: list[bytes] = []
        need = count
        try:
            while need > 0:
                if self._inflater.eof:
                    rest = self._inflater.unused_data
                    if not rest:
                        break
                    if self.encoding != "gzip":
                        raise ProtocolError(
                            f"expected one deflate stream, got {len(rest)} bytes after its end"
                        )
                    self._inflater = zlib.decompressobj(self._wbits)  # the next gzip member
                    self._source = rest
                chunk = self._inflater.decompress(self._source, need)
                self._source = self._inflater.unconsumed_tail
                parts.append(chunk)
                need -= len(chunk)
                if not chunk and not self._source and not self._inflater.eof:
                    break  # input exhausted before the end of the stream: checked by finish
        except zlib.error as exc:
            raise ProtocolError(
                f"expected a valid {self.encoding} body, got one zlib cannot read ({exc})"
            ) from None
        return b"".join(parts)

    def finish(self, expected: str) -> None:
        """Check that nothing is left and the last stream ended with its trailer."""
        if self.read(1):
            raise ProtocolError(f"expected {expected} in the {self.encoding} body, got more")
        if not self._inflater.eof:
            raise ProtocolError(
                f"expected a complete {self.encoding} body, got one cut short (no end of "
                f"stream or trailer: truncated or corrupt)"
            )


def _declared_binary_bytes(header: bytes, max_elements: int) -> int:
    """The tensor bytes a binary request's JSON header declares, its elements checked."""
    doc = loads(header)
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list):
        return 0  # parse_infer_request names the problem
    total = elements = 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            continue
        shape = tensor.get("shape")
        if isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape):
            elements += math.prod(shape)
        params = tensor.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if type(size) is int and size > 0:
            total += size
    if elements > max_elements:
        raise too_large("tensor elements", max_elements, f"{elements:,} declared", "--max-elements")
    return total


def _count_json_values(text: bytes | memoryview, max_elements: int) -> None:
    """Refuse a JSON body that may hold more values than the element cap, before parsing."""
    if len(text) < 2 * max_elements:  # each value takes a digit and a comma at least
        return
    bound = count_byte(text, b",") + 1
    if bound > max_elements:
        raise too_large(
            "tensor elements",
            max_elements,
            f"a JSON body of up to {bound:,} values",
            "--max-elements",
        )


#: Decompressed JSON is counted in pieces of this size as it is inflated.
_PIECE = 1 << 20


def _inflate_json(inflater: Inflater, max_bytes: int, max_elements: int) -> bytes:
    """A compressed JSON body, inflated a piece at a time and refused as soon as its bytes or
    its values (commas) pass the caps: a bomb stops early, and no step holds the GIL long."""
    pieces: list[bytes] = []
    size = commas = 0
    while True:
        piece = inflater.read(_PIECE)
        if not piece:
            break
        size += len(piece)
        commas += count_byte(piece, b",")
        if size > max_bytes:
            raise too_large("a decompressed body in bytes", max_bytes, "more", "--max-body-mb")
        if commas + 1 > max_elements:
            raise too_large(
                "tensor elements",
                max_elements,
                f"a JSON body of more than {commas:,} values",
                "--max-elements",
            )
        pieces.append(piece)
    inflater.finish("a JSON document")
    return b"".join(pieces)


def decode_request(
    body: bytes,
    encoding: str | None,
    header_length: int | None,
    *,
    max_bytes: int,
    max_elements: int,
) -> InferRequest:
    """Decompress (bounded), check the declared sizes, then parse a request body."""
    if encoding and encoding not in ("identity",):
        inflater = Inflater(body, encoding)
        if header_length is None:
            body = _inflate_json(inflater, max_bytes, max_elements)
        else:
            header = inflater.read(header_length) if header_length > 0 else b""
            if header_length <= 0 or len(header) < header_length:
                raise ProtocolError(
                    f"expected Inference-Header-Content-Length between 1 and the "
                    f"decompressed body's {len(header)} bytes, got {header_length}"
                )
            declared = _declared_binary_bytes(header, max_elements)
            if header_length + declared > max_bytes:
                raise too_large(
                    "a decompressed body in bytes",
                    max_bytes,
                    f"{header_length + declared:,} declared",
                    "--max-body-mb",
                )
            tensors = inflater.read(declared)
            inflater.finish(f"{declared:,} bytes of tensor data")
            body = header + tensors
    elif header_length is not None and 0 < header_length <= len(body):
        _declared_binary_bytes(body[:header_length], max_elements)
    if header_length is None:
        _count_json_values(body, max_elements)
    elif 0 < header_length <= len(body):
        _count_json_values(memoryview(body)[:header_length], max_elements)
    return parse_infer_request(body, header_length)
