"""Request bodies read with a bound, so a client cannot make the server hold gigabytes."""

from fastapi import Request

from gateway.errors import TooLarge


async def read_bounded_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"request body of {declared} bytes is over the server's limit of {max_bytes} (--max-body-bytes)", field="body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"request body is over the server's limit of {max_bytes} bytes (--max-body-bytes)")
    return bytes(body)
