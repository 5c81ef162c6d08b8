#!/usr/bin/env bash
# Regenerates the encrypted fixtures in this folder from plain/ with encrypt.py (an encryptor
# independent of ferroflux's decryptor), the real `age` CLI and the real `gpg`.
# The keys in keys/ are throwaway test keys, published on purpose: never use them for anything.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-encrypted}
mkdir -p "$out"
AGE1=$(grep -o 'age1[a-z0-9]*' keys/age1.agekey | head -1)
AGE2=$(grep -o 'age1[a-z0-9]*' keys/age2.agekey | head -1)
FP=$(cat keys/pgp.fingerprint)
GNUPGHOME=$(mktemp -d)
trap 'rm -rf "$GNUPGHOME"' EXIT
chmod 700 "$GNUPGHOME"
gpg --homedir "$GNUPGHOME" --batch --quiet --import keys/pgp.pub.asc 2>/dev/null
enc() { python3 encrypt.py "$@" --gnupghome "$GNUPGHOME"; }
enc yaml plain/secret-stringdata.yaml "$out/secret-stringdata.age.yaml" --age "$AGE1" --encrypted-regex '^(data|stringData)$'
enc yaml plain/secret-data.yaml "$out/secret-data.pgp.yaml" --pgp "$FP" --encrypted-regex '^(data|stringData)$'
enc yaml plain/secret-data.yaml "$out/secret-data.two.yaml" --age "$AGE2" --pgp "$FP" --encrypted-regex '^(data|stringData)$' --mac-only-encrypted
enc dotenv plain/app.env "$out/app.env" --age "$AGE1" --age "$AGE2"
enc binary plain/blob.bin "$out/blob.bin" --pgp "$FP"
enc yaml plain/config.yaml "$out/config.yaml" --age "$AGE1"
enc json plain/settings.json "$out/settings.json" --age "$AGE2" --unencrypted-regex '^debug$'
