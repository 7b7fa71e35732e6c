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
import base64
import json
import sys
from urllib.parse import urlsplit

sys.dont_write_bytecode = True  # no scripts/__pycache__ from the shared module
from winrm_check_common import parse_args, print_outcome  # noqa: E402

try:
    from pypsrp.client import Client
    from pypsrp.exceptions import AuthenticationError, WinRMTransportError
except ImportError:
    print(json.dumps({"error": "pypsrp not installed"}))
    sys.exit(3)


def main():
    a = parse_args("--auth")
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

    def run():
        out = {}
        for name, command in (("cmd", "iisreset /status"),
                              ("ps", "powershell -NoProfile -EncodedCommand " + encoded)):
            stdout, stderr, rc = client.execute_cmd(command)
            out[name] = {"std_out": stdout, "std_err": stderr, "status_code": rc}
        return out

    print_outcome(run, AuthenticationError, WinRMTransportError)


if __name__ == "__main__":
    main()
