"""What pywinrm-check.py and pypsrp-check.py share: their command line and the JSON report
of a refusal (exit code 2)."""
import argparse
import json
import sys


def parse_args(auth_flag):
    """<url> <user> <password>, `auth_flag` (default ntlm), --encryption (default always),
    --ca and --hostname-override."""
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("user")
    p.add_argument("password")
    p.add_argument(auth_flag, default="ntlm")
    p.add_argument("--encryption", default="always")
    p.add_argument("--ca", default=None)
    p.add_argument("--hostname-override", default=None)
    return p.parse_args()


def print_outcome(run, unauthorized, transport):
    """Prints `run()` as JSON; or, when it raises, {"error", "kind"} (`unauthorized` and
    `transport` are the client's exception types) and exits with 2."""
    try:
        out = run()
    except unauthorized as e:
        refused(str(e), "unauthorized")
    except transport as e:
        refused(str(e), "transport")
    except Exception as e:  # noqa: BLE001 - report any refusal as JSON
        refused("%s: %s" % (type(e).__name__, e), "other")
    print(json.dumps(out))


def refused(error, kind):
    print(json.dumps({"error": error, "kind": kind}))
    sys.exit(2)
