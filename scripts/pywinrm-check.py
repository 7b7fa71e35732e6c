#!/usr/bin/env python3
"""Runs commands against a WinRM endpoint with pywinrm (an independent client implementation).

Usage: pywinrm-check.py <url> <user> <password>
Prints one JSON document: {"ps": {...}, "cmd": {...}} with status_code, std_out, std_err of
run_ps (a PowerShell script) and run_cmd (iisreset /status). Exit code 3 if pywinrm is missing.
"""
import json
import sys

try:
    import winrm
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
    url, user, password = sys.argv[1:4]
    session = winrm.Session(url, auth=(user, password), transport="basic",
                            operation_timeout_sec=5, read_timeout_sec=10)
    script = ("$result = @()\n"
              "foreach ($pool in @(Get-ChildItem -Path 'IIS:\\AppPools')) { $result += $pool.Name }\n"
              "ConvertTo-Json -InputObject ([pscustomobject]@{ pools = @($result) }) -Compress\n")
    out = {
        "ps": result(session.run_ps(script)),
        "cmd": result(session.run_cmd("iisreset", ["/status"])),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
