#!/usr/bin/env python3
"""Runs commands against a WinRM endpoint with pywinrm (an independent client implementation).

Usage: pywinrm-check.py <url> <user> <password> [--transport ntlm|basic|negotiate|kerberos]
                        [--encryption auto|always|never] [--ca <ca.pem>]
                        [--hostname-override <fqdn>]

Default: NTLM with message encryption always (what Windows at its defaults needs). With an
https:// URL and --ca, the server certificate is validated against that CA.
--transport kerberos uses the ticket cache (KRB5CCNAME, after kinit; KRB5_CONFIG names the
KDC); <user> is the principal (user@REALM), <password> is not used; the service ticket is for
HTTP/<--hostname-override, else the URL's host>.
Prints one JSON document: {"ps": {...}, "cmd": {...}} with status_code, std_out, std_err of
run_ps (a PowerShell script) and run_cmd (iisreset /status); or, when the server refuses,
{"error": "<message>", "kind": "unauthorized" | "transport" | "other"} with exit code 2.
Exit code 3 if pywinrm is missing.
"""
import json
import sys

sys.dont_write_bytecode = True  # no scripts/__pycache__ from the shared module
from winrm_check_common import parse_args, print_outcome  # noqa: E402

try:
    import winrm
    from winrm.exceptions import InvalidCredentialsError, WinRMTransportError
except ImportError:
    print(json.dumps({"error": "pywinrm not installed"}))
    sys.exit(3)


def result(r):
    return {
        "status_code": r.status_code,
        "std_out": r.std_out.decode("utf-8", "replace"),
        "std_err": r.std_err.decode("utf-8", "replace"),
    }


def main():
    a = parse_args("--transport")
    kwargs = dict(auth=(a.user, a.password), transport=a.transport,
                  message_encryption=a.encryption,
                  operation_timeout_sec=5, read_timeout_sec=10)
    if a.ca:
        kwargs.update(server_cert_validation="validate", ca_trust_path=a.ca)
    if a.hostname_override:
        kwargs.update(kerberos_hostname_override=a.hostname_override)
    session = winrm.Session(a.url, **kwargs)
    script = ("$result = @()\n"
              "foreach ($pool in @(Get-ChildItem -Path 'IIS:\\AppPools')) { $result += $pool.Name }\n"
              "ConvertTo-Json -InputObject ([pscustomobject]@{ pools = @($result) }) -Compress\n")
    print_outcome(lambda: {
        "ps": result(session.run_ps(script)),
        "cmd": result(session.run_cmd("iisreset", ["/status"])),
        "ps_error": result(session.run_ps("Get-Item -Path 'C:\\does\\not\\exist'")),
    }, InvalidCredentialsError, WinRMTransportError)


if __name__ == "__main__":
    main()
