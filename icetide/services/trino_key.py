"""The embedded Trino's S3 key, handed to its AWS SDK as a `credential_process` (icetide.services.trino_catalog).

Run by the SDK (`sh -c`) as `python -I -S trino_key.py FILE PROFILE`, standalone (the standard library only, no
icetide import: it starts in tens of milliseconds). It prints the key in section PROFILE of the AWS
shared-credentials file FILE as the process-credentials JSON (version 1), with an `Expiration` LIFETIME_S
ahead: the SDK holds the key until then at most (its cache goes stale at the expiration) and runs the
process again for the next S3 request after it, so a key file rewritten by a rotation is used within
LIFETIME_S. Measured with the Trino of tests/integration/test_trino_lake.py's shape: 2 runs over 20 queries in
17.5 s (most of them served from Trino's metadata cache, no S3 request). Errors name the file and the
section, never the key.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import sys

LIFETIME_S = 16  # above the SDK's 15 s refresh threshold (its prefetch time is the expiration minus 15 s)


def credentials(path: str, profile: str, now: dt.datetime | None = None) -> dict[str, object]:
    """The process-credentials document of the key in `profile` of `path` (ValueError without the key)."""
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path):
        raise ValueError(f"no credentials file {path}")
    if not parser.has_section(profile):
        raise ValueError(f"no section [{profile}] in {path}")
    section = parser[profile]
    key_id = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    if not key_id or not secret:
        raise ValueError(f"{path} [{profile}] has no aws_access_key_id or aws_secret_access_key")
    expires = (now or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=LIFETIME_S)
    return {"Version": 1, "AccessKeyId": key_id, "SecretAccessKey": secret,
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: trino_key.py CREDENTIALS_FILE PROFILE", file=sys.stderr)
        return 2
    try:
        document = credentials(argv[0], argv[1])
    except configparser.Error:  # its message quotes the file's lines: the key with them
        print(f"icetide trino key: {argv[0]} is not an INI credentials file", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"icetide trino key: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
