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
import argparse
import json
import sys

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
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument("--transport", default="ntlm")
    p.add_argument("--encryption", default="always")
    p.add_argument("--ca", default=None)
    p.add_argument("--hostname-override", default=None)
    a = p.parse_args()
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
    try:
        out = {
            "ps": result(session.run_ps(script)),
            "cmd": result(session.run_cmd("iisreset", ["/status"])),
            "ps_error": result(session.run_ps("Get-Item -Path 'C:\\does\\not\\exist'")),
        }
    except InvalidCredentialsError as e:
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
