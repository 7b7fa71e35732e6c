#!/usr/bin/env python3
"""Runs commands against a WinRM endpoint with pypsrp's WinRS (the cmd shell resource; an
independent client implementation, encryption via pyspnego).

Usage: pypsrp-check.py <url> <user> <password> [--auth ntlm|negotiate|kerberos]
                       [--encryption always|never|auto] [--ca <ca.pem>] [--hostname-override <fqdn>]

--auth kerberos (or negotiate) with an empty <password> uses the ticket cache (KRB5CCNAME,
after kinit; KRB5_CONFIG names the KDC); the service ticket is for
HTTP/<--hostname-override, else the URL's host>. With an https:// URL and --ca, the server
certificate is validated against that CA.

Prints one JSON document: {"cmd": {...}, "ps": {...}} (std_out, std_err, status_code of
`iisreset /status` and of `powershell -EncodedCommand <script>`), or {"error": ..., "kind":
...} with exit code 2 when the server refuses. Exit code 3 if pypsrp is missing.
"""
import argparse
import base64
import json
import sys
from urllib.parse import urlsplit

try:
    from pypsrp.client import Client
    from pypsrp.exceptions import AuthenticationError, WinRMTransportError
except ImportError:
    print(json.dumps({"error": "pypsrp not installed"}))
    sys.exit(3)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("--auth", default="ntlm")
    p.add_argument("--encryption", default="always")
    p.add_argument("--ca", default=None)
    p.add_argument("--hostname-override", default=None)
    a = p.parse_args()
    u = urlsplit(a.url)
    kwargs = {}
    if a.ca:
        kwargs["cert_validation"] = a.ca
    if a.hostname_override:
        kwargs["negotiate_hostname_override"] = a.hostname_override
    client = Client(u.hostname, port=u.port, path=u.path.lstrip("/"), username=a.user,
                    password=a.password or None, ssl=u.scheme == "https", auth=a.auth,
                    encryption=a.encryption, operation_timeout=5, read_timeout=10, **kwargs)
    script = "Get-WebAppPoolState -Name 'MSExchangeOWAAppPool' | ConvertTo-Json -Compress"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    try:
        out = {}
        for name, command in (("cmd", "iisreset /status"),
                              ("ps", "powershell -NoProfile -EncodedCommand " + encoded)):
            stdout, stderr, rc = client.execute_cmd(command)
            out[name] = {"std_out": stdout, "std_err": stderr, "status_code": rc}
    except AuthenticationError as e:
        print(json.dumps({"error": str(e), "kind": "unauthorized"}))
        sys.exit(2)
    except WinRMTransportError as e:
        print(json.dumps({"error": str(e), "kind": "transport"}))
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - report any refusal as JSON
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e), "kind": "other"}))
        sys.exit(2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
