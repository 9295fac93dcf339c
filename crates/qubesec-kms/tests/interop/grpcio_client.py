"""A KMS v2 client as a new user writes one: Python grpcio, default channel.

grpcio's channel for "unix:PATH" sends the percent-encoded socket path as the
HTTP/2 :authority. Messages are encoded by hand (no generated stubs needed):
the KMS v2 fields are strings and bytes with small field numbers.

Usage: grpcio_client.py SOCKET
"""

import sys

import grpc


def field(num, value):
    """A length-delimited protobuf field (wire type 2)."""
    data = value.encode() if isinstance(value, str) else value
    key = (num << 3) | 2
    out = bytearray([key])
    n = len(data)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + data


def parse(buf):
    """Length-delimited fields of a message, as {number: bytes}."""
    fields, i = {}, 0
    while i < len(buf):
        key = buf[i]
        i += 1
        num, wire = key >> 3, key & 7
        assert wire == 2, f"unexpected wire type {wire}"
        n, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        fields[num] = buf[i : i + n]
        i += n
    return fields


def call(channel, method, request):
    stub = channel.unary_unary(
        f"/v2.KeyManagementService/{method}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    return parse(stub(request, timeout=10))


def main():
    socket = sys.argv[1]
    # The default channel: no authority override, no options.
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        status = call(channel, "Status", b"")
        healthz, key_id = status[2].decode(), status[3].decode()
        print(f"status {healthz} {key_id}")
        sealed = call(channel, "Encrypt", field(1, b"grpcio dek seed") + field(2, "grpcio-uid"))
        request = field(1, sealed[1]) + field(2, "grpcio-uid") + field(3, sealed[2])
        plain = call(channel, "Decrypt", request)
        assert plain[1] == b"grpcio dek seed", plain
        print("round trip ok")


if __name__ == "__main__":
    main()
