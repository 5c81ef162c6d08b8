#!/usr/bin/env python3
"""A test-side SOPS encryptor, independent of ferroflux's decryptor (src/sops).

It follows the published SOPS format (getsops/sops, version 3): every value encrypted with
AES256-GCM under a random 32-byte data key, a 32-byte IV and the value's path as additional data
(`key1:key2:`), the type in the envelope (`ENC[AES256_GCM,data:…,iv:…,tag:…,type:str]`), the MAC a
SHA-512 over all values (or only the encrypted ones, `mac_only_encrypted`) encrypted under the
data key with `lastmodified` as additional data, and the data key wrapped for each recipient by
the real `age` CLI (armored) and the real `gpg` (armored). Only for tests: it needs PyPI's
`cryptography`, PyYAML, `age` and `gpg`.

usage: encrypt.py FORMAT IN OUT [--age RECIPIENT]... [--pgp FINGERPRINT]... [--gnupghome DIR]
                  [--encrypted-regex RE | --unencrypted-regex RE | --encrypted-suffix S |
                   --unencrypted-suffix S] [--mac-only-encrypted]
FORMAT: yaml, json, dotenv, binary
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys

import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")


class RawStr(bytes):
    """The binary store's single value: Go's string(bytes), so typed `str`, any bytes."""


def to_bytes(value):
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        text = repr(value)
        if text.endswith(".0"):
            text = text[:-2]
        return text.encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def type_of(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, RawStr):
        return "str"
    if isinstance(value, bytes):
        return "bytes"
    return "str"


def encrypt_value(key, value, path):
    if value == "":
        return ""
    iv = os.urandom(32)
    sealed = AESGCM(key).encrypt(iv, to_bytes(value), ":".join(path).encode() + b":")
    data, tag = sealed[:-16], sealed[-16:]
    b64 = lambda b: base64.b64encode(b).decode()
    return f"ENC[AES256_GCM,data:{b64(data)},iv:{b64(iv)},tag:{b64(tag)},type:{type_of(value)}]"


class Rules:
    def __init__(self, args):
        self.args = args

    def encrypted(self, path):
        a = self.args
        if a.encrypted_regex:
            return any(re.search(a.encrypted_regex, p) for p in path)
        if a.unencrypted_regex:
            return not any(re.search(a.unencrypted_regex, p) for p in path)
        if a.encrypted_suffix:
            return any(p.endswith(a.encrypted_suffix) for p in path)
        suffix = a.unencrypted_suffix or "_unencrypted"
        return not any(p.endswith(suffix) for p in path)


def walk(node, path, key, rules, mac, mac_only):
    """Encrypts `node` in place (returns the new node), feeding the MAC in document order."""
    if isinstance(node, dict):
        return {k: walk(v, path + [k], key, rules, mac, mac_only) for k, v in node.items()}
    if isinstance(node, list):
        # List items share their parent's path, as in SOPS.
        return [walk(v, path, key, rules, mac, mac_only) for v in node]
    if node is None:
        return None
    encrypted = rules.encrypted(path)
    if not mac_only or encrypted:
        mac.update(to_bytes(node))
    return encrypt_value(key, node, path) if encrypted else node


def wrap_age(data_key, recipient):
    out = subprocess.run(["age", "--encrypt", "--armor", "-r", recipient], input=data_key, capture_output=True, check=True)
    return out.stdout.decode()


def wrap_pgp(data_key, fingerprint, gnupghome):
    env = dict(os.environ, GNUPGHOME=gnupghome) if gnupghome else None
    out = subprocess.run(
        ["gpg", "--batch", "--yes", "--quiet", "--trust-model", "always", "--armor", "--encrypt", "-r", fingerprint],
        input=data_key, capture_output=True, check=True, env=env)
    return out.stdout.decode()


def flatten(prefix, value, out):
    """SOPS' flattening of metadata for dotenv and INI: `sops_age__list_0__map_enc`."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}{k}" if prefix.endswith("sops_") else f"{prefix}__map_{k}", v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            flatten(f"{prefix}__list_{i}", v, out)
    else:
        out.append((prefix, value))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("format", choices=["yaml", "json", "dotenv", "binary"])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--age", action="append", default=[])
    p.add_argument("--pgp", action="append", default=[])
    p.add_argument("--gnupghome")
    p.add_argument("--encrypted-regex")
    p.add_argument("--unencrypted-regex")
    p.add_argument("--encrypted-suffix")
    p.add_argument("--unencrypted-suffix")
    p.add_argument("--mac-only-encrypted", action="store_true")
    args = p.parse_args()

    raw = open(args.input, "rb").read()
    if args.format == "yaml":
        documents = [d for d in yaml.safe_load_all(raw.decode())]
    elif args.format == "json":
        documents = [json.loads(raw)]
    elif args.format == "dotenv":
        doc = {}
        for line in raw.decode().split("\n"):
            if not line or line.startswith("#"):
                continue
            k, _, v = line.partition("=")
            doc[k] = v.replace("\\n", "\n")
        documents = [doc]
    else:
        documents = [{"data": RawStr(raw)}]

    data_key = os.urandom(32)
    rules = Rules(args)
    mac = hashlib.sha512()
    if args.mac_only_encrypted:
        mac.update(MAC_ONLY_ENCRYPTED_INIT)
    documents = [walk(d, [], data_key, rules, mac, args.mac_only_encrypted) for d in documents]
    lastmodified = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    mac_value = mac.hexdigest().upper()
    iv = os.urandom(32)
    sealed = AESGCM(data_key).encrypt(iv, mac_value.encode(), lastmodified.encode())
    b64 = lambda b: base64.b64encode(b).decode()
    mac_env = f"ENC[AES256_GCM,data:{b64(sealed[:-16])},iv:{b64(iv)},tag:{b64(sealed[-16:])},type:str]"

    metadata = {}
    if args.age:
        metadata["age"] = [{"recipient": r, "enc": wrap_age(data_key, r)} for r in args.age]
    metadata["lastmodified"] = lastmodified
    metadata["mac"] = mac_env
    if args.pgp:
        created = lastmodified
        metadata["pgp"] = [{"created_at": created, "enc": wrap_pgp(data_key, fp, args.gnupghome), "fp": fp} for fp in args.pgp]
    for name in ("encrypted_regex", "unencrypted_regex", "encrypted_suffix", "unencrypted_suffix"):
        if getattr(args, name):
            metadata[name] = getattr(args, name)
    if args.mac_only_encrypted:
        metadata["mac_only_encrypted"] = True
    metadata["version"] = "3.9.4"

    with open(args.output, "w") as out:
        if args.format == "yaml":
            for i, d in enumerate(documents):
                if i == 0:
                    d = dict(d, sops=metadata)
                if i > 0:
                    out.write("---\n")
                out.write(yaml.safe_dump(d, sort_keys=False, default_flow_style=False, width=1 << 20))
        elif args.format in ("json", "binary"):
            json.dump(dict(documents[0], sops=metadata), out, indent=4)
            out.write("\n")
        else:
            for k, v in documents[0].items():
                out.write(f"{k}={v}\n")
            flat = []
            flatten("sops_", metadata, flat)
            for k, v in flat:
                v = ("true" if v else "false") if isinstance(v, bool) else str(v)
                out.write(f"{k}={v.replace(chr(10), chr(92) + 'n')}\n")


if __name__ == "__main__":
    sys.exit(main())
