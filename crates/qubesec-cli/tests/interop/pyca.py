#!/usr/bin/env python3
"""Interop helper: the other side of qubesec's conversations, played by pyca/cryptography.

Called by ../interop.rs, one sub-command per process. Every check that fails
prints one line on stderr and exits 1; a usage error exits 2. Needs
cryptography >= 48 (ML-KEM-768/1024 and ML-DSA-44/65/87, seed-form PKCS#8).

Sub-commands:
  check                                   cryptography is new enough; print its version
  load-private KEY.pem PUB.pem ALG        load our keys; re-serialize and compare bytes
  keygen ALG KEY.pem PUB.pem              generate a key pair in Python
  kem-encaps PUB.pem CT.bin SS.bin        encapsulate to a public key
  kem-decaps KEY.pem CT.bin SS.bin        decapsulate; write the secret
  sig-sign KEY.pem MSG SIG.bin [CTXHEX]   sign (pure ML-DSA, optional context)
  sig-verify PUB.pem MSG SIG.bin [CTXHEX] verify; exit 1 if invalid
  spki-sha256 FILE.pem                    SHA-256 of the DER SPKI of a public key,
                                          certificate's key or private key's public key
  make-cert SUBJECT_PUB.pem ISSUER_KEY.pem CERT.pem
                                          a minimal X.509 v3 certificate for the subject's
                                          key, signed with an ML-DSA issuer key
"""

import datetime
import hashlib
import sys

MIN_VERSION = (48, 0)


def fail(msg, code=1):
    print(f"pyca.py: {msg}", file=sys.stderr)
    sys.exit(code)


try:
    import cryptography
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
except ImportError as e:  # pragma: no cover - reported to the Rust test
    fail(f"pyca/cryptography with ML-KEM and ML-DSA support is not importable: {e}", 3)

KEM = {
    "ML-KEM-768": mlkem.MLKEM768PrivateKey,
    "ML-KEM-1024": mlkem.MLKEM1024PrivateKey,
}
SIG = {
    "ML-DSA-44": mldsa.MLDSA44PrivateKey,
    "ML-DSA-65": mldsa.MLDSA65PrivateKey,
    "ML-DSA-87": mldsa.MLDSA87PrivateKey,
}
# Private and public key classes per algorithm.
CLASSES = {
    "ML-KEM-768": (mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey),
    "ML-KEM-1024": (mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey),
    "ML-DSA-44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "ML-DSA-65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "ML-DSA-87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}
# NIST CSOR OIDs (RFC 9881) used when building certificates.
MLDSA_OID = {
    mldsa.MLDSA44PrivateKey: "2.16.840.1.101.3.4.3.17",
    mldsa.MLDSA65PrivateKey: "2.16.840.1.101.3.4.3.18",
    mldsa.MLDSA87PrivateKey: "2.16.840.1.101.3.4.3.19",
}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def private_pem(key):
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def public_pem(key):
    return key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def expect_class(key, alg, path):
    classes = CLASSES.get(alg)
    if classes is None:
        fail(f"{alg} is not an algorithm this helper knows", 2)
    if not isinstance(key, classes):
        fail(f"{path}: loaded as {type(key).__name__}, expected {alg}")


def cmd_check():
    version = tuple(int(p) for p in cryptography.__version__.split(".")[:2])
    if version < MIN_VERSION:
        fail(f"cryptography {cryptography.__version__} is too old; need >= 48.0", 3)
    print(cryptography.__version__)


def cmd_load_private(key_path, pub_path, alg):
    key_bytes = read(key_path)
    key = ser.load_pem_private_key(key_bytes, password=None)
    expect_class(key, alg, key_path)
    again = private_pem(key)
    if again != key_bytes:
        fail(f"{key_path}: Python re-serializes the private key differently:\n{again.decode()}")
    pub_bytes = read(pub_path)
    pub = ser.load_pem_public_key(pub_bytes)
    expect_class(pub, alg, pub_path)
    if pub.public_bytes_raw() != key.public_key().public_bytes_raw():
        fail(f"{pub_path}: public key does not match the private key's")
    if public_pem(pub) != pub_bytes:
        fail(f"{pub_path}: Python re-serializes the public key differently")


def cmd_keygen(alg, key_path, pub_path):
    cls = KEM.get(alg) or SIG.get(alg)
    if cls is None:
        fail(f"{alg} is not an algorithm this helper knows", 2)
    key = cls.generate()
    write(key_path, private_pem(key))
    write(pub_path, public_pem(key.public_key()))


def cmd_kem_encaps(pub_path, ct_path, ss_path):
    pub = ser.load_pem_public_key(read(pub_path))
    secret, ciphertext = pub.encapsulate()
    write(ct_path, ciphertext)
    write(ss_path, secret)


def cmd_kem_decaps(key_path, ct_path, ss_path):
    key = ser.load_pem_private_key(read(key_path), password=None)
    write(ss_path, key.decapsulate(read(ct_path)))


def cmd_sig_sign(key_path, msg_path, sig_path, ctx_hex=None):
    key = ser.load_pem_private_key(read(key_path), password=None)
    ctx = bytes.fromhex(ctx_hex) if ctx_hex else None
    write(sig_path, key.sign(read(msg_path), ctx))


def cmd_sig_verify(pub_path, msg_path, sig_path, ctx_hex=None):
    pub = ser.load_pem_public_key(read(pub_path))
    ctx = bytes.fromhex(ctx_hex) if ctx_hex else None
    try:
        pub.verify(read(sig_path), read(msg_path), ctx)
    except InvalidSignature:
        fail(f"{sig_path}: Python says the signature is invalid")


def spki_der_of(path):
    data = read(path)
    if b"PRIVATE KEY" in data:
        key = ser.load_pem_private_key(data, password=None).public_key()
    elif b"CERTIFICATE" in data:
        return cert_spki(data)
    else:
        key = ser.load_pem_public_key(data)
    return key.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)


def cmd_spki_sha256(path):
    print(hashlib.sha256(spki_der_of(path)).hexdigest())


# --- a minimal DER writer, enough for one certificate ---------------------------

def der(tag, body):
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def seq(*items):
    return der(0x30, b"".join(items))


def oid(dotted):
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return der(0x06, body)


def utc_time(t):
    return der(0x17, t.strftime("%y%m%d%H%M%SZ").encode())


def name(cn):
    return seq(der(0x31, seq(oid("2.5.4.3"), der(0x0C, cn.encode()))))


def read_der_tlv(buf, pos):
    """Returns (tag, start_of_value, end_of_value) of the TLV at pos."""
    tag = buf[pos]
    first = buf[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    k = first & 0x7F
    n = int.from_bytes(buf[pos + 2 : pos + 2 + k], "big")
    return tag, pos + 2 + k, pos + 2 + k + n


def cert_spki(pem):
    """The DER SPKI inside a certificate (the 7th field of a v3 TBSCertificate)."""
    from base64 import b64decode

    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
    cert = b64decode(body)
    _, cstart, _ = read_der_tlv(cert, 0)
    _, pos, _ = read_der_tlv(cert, cstart)  # into TBSCertificate
    for _ in range(6):  # version, serial, signature, issuer, validity, subject
        _, _, end = read_der_tlv(cert, pos)
        pos = end
    _, _, end = read_der_tlv(cert, pos)
    return cert[pos:end]


def cmd_make_cert(subject_pub_path, issuer_key_path, cert_path):
    subject_spki = spki_der_of(subject_pub_path)
    issuer = ser.load_pem_private_key(read(issuer_key_path), password=None)
    sig_oid = next((o for cls, o in MLDSA_OID.items() if isinstance(issuer, cls)), None)
    if sig_oid is None:
        fail(f"{issuer_key_path}: the issuer key must be ML-DSA", 2)
    alg_id = seq(oid(sig_oid))  # parameters absent (RFC 9881)
    now = datetime.datetime.now(datetime.timezone.utc)
    tbs = seq(
        der(0xA0, der(0x02, b"\x02")),  # [0] version v3
        der(0x02, b"\x01\x23"),  # serialNumber
        alg_id,
        name("qubesec interop issuer"),
        seq(utc_time(now - datetime.timedelta(minutes=5)), utc_time(now + datetime.timedelta(days=1))),
        name("qubesec interop subject"),
        subject_spki,
    )
    signature = issuer.sign(tbs)
    cert = seq(tbs, alg_id, der(0x03, b"\x00" + signature))
    import base64

    b64 = base64.b64encode(cert).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    write(cert_path, ("-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n").encode())


# --- certificates and CSRs: Python builds, parses and verifies ------------------

def pem_block(label, data):
    import base64

    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN " + label + "-----\n" + "\n".join(lines) + "\n-----END " + label + "-----\n").encode()


def ext(dotted, critical, value):
    return seq(oid(dotted), *([der(0x01, b"\xff")] if critical else []), der(0x04, value))


def sign_cert(subject_cn, issuer_cn, subject_spki, issuer_key, serial, exts):
    sig_oid = next((o for cls, o in MLDSA_OID.items() if isinstance(issuer_key, cls)), None)
    alg_id = seq(oid(sig_oid))
    now = datetime.datetime.now(datetime.timezone.utc)
    tbs = seq(
        der(0xA0, der(0x02, b"\x02")),
        der(0x02, serial),
        alg_id,
        name(issuer_cn),
        seq(utc_time(now - datetime.timedelta(minutes=5)), utc_time(now + datetime.timedelta(days=1))),
        name(subject_cn),
        subject_spki,
        der(0xA3, seq(*exts)),
    )
    return seq(tbs, alg_id, der(0x03, b"\x00" + issuer_key.sign(tbs)))


def cmd_make_chain(out_dir):
    """A root CA (ML-DSA-65) and a leaf (ML-DSA-44, DNS SAN py.example.com), built by this script."""
    import os

    root_key = mldsa.MLDSA65PrivateKey.generate()
    leaf_key = mldsa.MLDSA44PrivateKey.generate()
    spki = lambda k: k.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    ca_exts = [ext("2.5.29.19", True, seq(der(0x01, b"\xff"))), ext("2.5.29.15", True, der(0x03, b"\x01\x06"))]
    root = sign_cert("pyca root", "pyca root", spki(root_key), root_key, b"\x01", ca_exts)
    leaf_exts = [
        ext("2.5.29.19", True, seq()),
        ext("2.5.29.15", True, der(0x03, b"\x07\x80")),
        ext("2.5.29.17", False, seq(der(0x82, b"py.example.com"))),
    ]
    leaf = sign_cert("pyca leaf", "pyca root", spki(leaf_key), root_key, b"\x02", leaf_exts)
    write(os.path.join(out_dir, "py-root.pem"), pem_block("CERTIFICATE", root))
    write(os.path.join(out_dir, "py-leaf.pem"), pem_block("CERTIFICATE", leaf))
    write(os.path.join(out_dir, "py-root.key"), private_pem(root_key))


def verify_with_spki(spki_der, signature, data, what):
    key = ser.load_der_public_key(spki_der)
    try:
        key.verify(signature, data)
    except InvalidSignature:
        fail(f"{what}: Python says the signature is invalid")


def cmd_check_cert(cert_path, issuer_path):
    """Parses a certificate with pyca, prints its fields, verifies its signature with the issuer's key."""
    import json

    from cryptography import x509

    cert = x509.load_pem_x509_certificate(read(cert_path))
    issuer_spki = spki_der_of(issuer_path)
    verify_with_spki(issuer_spki, cert.signature, cert.tbs_certificate_bytes, cert_path)
    out = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": cert.serial_number,
        "version": cert.version.name,
        "sig_oid": cert.signature_algorithm_oid.dotted_string,
        "days": (cert.not_valid_after_utc - cert.not_valid_before_utc).days,
        "extensions": {},
    }
    for e in cert.extensions:
        v = e.value
        if isinstance(v, x509.SubjectAlternativeName):
            val = [str(n.value) for n in v]
        elif isinstance(v, x509.BasicConstraints):
            val = {"ca": v.ca, "path_length": v.path_length}
        elif isinstance(v, x509.KeyUsage):
            val = sorted(k for k in ["digital_signature", "key_encipherment", "key_cert_sign", "crl_sign"] if getattr(v, k))
        elif isinstance(v, x509.ExtendedKeyUsage):
            val = [u.dotted_string for u in v]
        else:
            val = v.__class__.__name__
        out["extensions"][e.oid.dotted_string] = {"critical": e.critical, "value": val}
    print(json.dumps(out, sort_keys=True))


def csr_spki(der_bytes):
    """The SPKI inside a CSR: the 3rd field of CertificationRequestInfo."""
    _, start, _ = read_der_tlv(der_bytes, 0)
    _, pos, _ = read_der_tlv(der_bytes, start)
    for _ in range(2):
        _, _, end = read_der_tlv(der_bytes, pos)
        pos = end
    _, _, end = read_der_tlv(der_bytes, pos)
    return der_bytes[pos:end]


def cmd_check_csr(csr_path):
    import json

    from cryptography import x509

    csr = x509.load_pem_x509_csr(read(csr_path))
    raw = csr.public_bytes(ser.Encoding.DER)
    verify_with_spki(csr_spki(raw), csr.signature, csr.tbs_certrequest_bytes, csr_path)
    sans = [str(n.value) for n in csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]
    print(json.dumps({"subject": csr.subject.rfc4514_string(), "sans": sans}, sort_keys=True))


COMMANDS = {
    "check": (cmd_check, 0, 0),
    "load-private": (cmd_load_private, 3, 3),
    "keygen": (cmd_keygen, 3, 3),
    "kem-encaps": (cmd_kem_encaps, 3, 3),
    "kem-decaps": (cmd_kem_decaps, 3, 3),
    "sig-sign": (cmd_sig_sign, 3, 4),
    "sig-verify": (cmd_sig_verify, 3, 4),
    "spki-sha256": (cmd_spki_sha256, 1, 1),
    "make-cert": (cmd_make_cert, 3, 3),
    "make-chain": (cmd_make_chain, 1, 1),
    "check-cert": (cmd_check_cert, 2, 2),
    "check-csr": (cmd_check_csr, 1, 1),
}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        fail(f"usage: pyca.py {{{'|'.join(COMMANDS)}}} ARGS...", 2)
    func, lo, hi = COMMANDS[argv[1]]
    args = argv[2:]
    if not lo <= len(args) <= hi:
        fail(f"{argv[1]} takes {lo}..{hi} arguments, got {len(args)}", 2)
    func(*args)


if __name__ == "__main__":
    main(sys.argv)
