#!/usr/bin/env bash
# Two Samba AD DCs of one domain with real DRS replication, on two loopback addresses
# (recipe: ../shared/reference/samba-ad/two-dcs.md). Run as root; Debian 12, samba 4.17.
#
# Usage: scripts/samba-ad-pair.sh start DIR [IP1 IP2]   provision DC1 (scripts/samba-ad.sh), join
#                                                       DC2, start both (DIR is WIPED); prints pair.env
#        scripts/samba-ad-pair.sh stop DIR              stop both DCs (by their recorded PIDs), remove
#                                                       the addresses added to lo and the /etc/hosts
#                                                       lines added for DIR
#        scripts/samba-ad-pair.sh stop-dc DIR 1|2       stop one DC (by its PID); the other keeps running
#        scripts/samba-ad-pair.sh start-dc DIR 1|2      start it again (waits for LDAPS)
#        scripts/samba-ad-pair.sh replicate DIR [1|2]   force DC2 to pull from DC1 now (or DC1 from DC2
#                                                       with 1): `samba-tool drs replicate`
#        scripts/samba-ad-pair.sh inbound DIR 1|2 on|off
#                                                       allow / pause inbound replication of one DC
#                                                       (nTDSDSA options DISABLE_INBOUND_REPL, what
#                                                       `repadmin /options DC +DISABLE_INBOUND_REPL` sets)
#        scripts/samba-ad-pair.sh notify DIR SECONDS|default
#                                                       set `dreplsrv:notify_interval` on both DCs and
#                                                       restart them
#   IP1 / IP2  default 127.0.0.5 / 127.0.0.6 (added to lo when missing, removed again by stop)
# Env: AD_REALM (default EXP.EXAMPLE.TEST), AD_DOMAIN (EXP), AD_ADMINPASS,
#      AD_NOTIFY_INTERVAL (1 = DC1 tells DC2 about a change within ~1 s; `default` = Samba's 5 s)
# Layout: DIR/dc1 (a normal scripts/samba-ad.sh DIR: ad.env, tls/ca.pem = the CA of both DCs),
#         DIR/dc2, DIR/krb5.conf (both KDCs by IP), DIR/pair.env, DIR/hosts-marker.
# pair.env = DC1's ad.env plus AD_PAIR_DIR, AD_DC1_NAME/AD_DC1_IP/AD_DC1_URL/AD_DC1_PID/AD_DC1_SMBCONF
# and the same for DC2, AD_PAIR_KRB5_CONF.
set -euo pipefail

usage="usage: $0 start DIR [IP1 IP2] | stop DIR | stop-dc DIR 1|2 | start-dc DIR 1|2 | replicate DIR [1|2] | inbound DIR 1|2 on|off | notify DIR SECONDS|default"
cmd=${1:-}
case $cmd in
  start|stop|stop-dc|start-dc|replicate|inbound|notify) shift ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
DIR=$(realpath -m "${1:?$usage}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
t0=$(date +%s%N)
ts() { printf '[%5d ms] %s\n' $(( ($(date +%s%N) - t0) / 1000000 )) "$*" >&2; }
MARK="# exch-revoke samba-ad-pair $DIR"
export KRB5_CONFIG=$DIR/krb5.conf

dc_dir() { echo "$DIR/dc$1"; }
dc_pid_alive() { local f; f="$(dc_dir "$1")/samba.pid"; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

stop_one() {
  local d pid; d=$(dc_dir "$1")
  [[ -f $d/samba.pid ]] || return 0
  pid=$(cat "$d/samba.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$d/samba.pid"
}

wait_ldaps() { # N IP: until an administrator bind over LDAPS answers (30 s)
  local d; d=$(dc_dir "$1")
  for _ in $(seq 1 300); do
    if LDAPTLS_CACERT="$DIR/dc1/tls/ca.pem" ldapsearch -H "ldaps://$2" -x -LLL -o nettimeout=2 \
         -D "$AD_ADMIN_BIND" -w "$AD_ADMIN_PASSWORD" -b '' -s base dnsHostName >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$(cat "$d/samba.pid")" 2>/dev/null || { cat "$d/log/samba.out" >&2; echo "DC$1 died" >&2; return 1; }
    sleep 0.1
  done
  cat "$d/log/samba.out" >&2; echo "DC$1 not ready on ldaps://$2 after 30 s" >&2; return 1
}

start_one() { # N: start the DC whose files are in DIR/dcN (IP from pair.env)
  local d ip; d=$(dc_dir "$1")
  dc_pid_alive "$1" && { echo "DC$1 is already running (pid $(cat "$d/samba.pid"))" >&2; return 0; }
  ip=$(pair_var "AD_DC$1_IP")
  setsid samba -i -M single -s "$d/etc/smb.conf" --debuglevel=1 >>"$d/log/samba.out" 2>&1 </dev/null &
  echo $! >"$d/samba.pid"
  wait_ldaps "$1" "$ip"
  sed -i "s/^AD_DC$1_PID=.*/AD_DC$1_PID=$(cat "$d/samba.pid")/" "$DIR/pair.env"
}

pair_var() { sed -n "s/^$1=//p" "$DIR/pair.env"; }

load_env() {
  [[ -f $DIR/pair.env ]] || { echo "$DIR/pair.env missing: run $0 start $DIR first" >&2; exit 1; }
  # shellcheck disable=SC1091
  source "$DIR/pair.env"
}

remove_hosts_lines() {
  [[ -f /etc/hosts ]] || return 0
  if grep -qF "$MARK" /etc/hosts; then
    # In place (not a rename): /etc/hosts may be a bind mount.
    local kept; kept=$(grep -vF "$MARK" /etc/hosts || true)
    printf '%s\n' "$kept" >/etc/hosts
  fi
}

stop_pair() {
  stop_one 2
  if [[ -d $DIR/dc1 ]]; then "$here/samba-ad.sh" stop "$DIR/dc1" >/dev/null 2>&1 || stop_one 1; fi
  if [[ -f $DIR/added-ip ]]; then
    ip addr del "$(cat "$DIR/added-ip")/32" dev lo 2>/dev/null || true
    rm -f "$DIR/added-ip"
  fi
  remove_hosts_lines
}

set_notify() { # VALUE in DIR/dcN/etc/smb.conf of both DCs
  local n conf
  for n in 1 2; do
    conf="$(dc_dir $n)/etc/smb.conf"
    sed -i '/dreplsrv:notify_interval/d' "$conf"
    if [[ $1 != default ]]; then
      sed -i "s/^\[global\]$/[global]\n\tdreplsrv:notify_interval = $1/" "$conf"
    fi
  done
}

case $cmd in
  stop) stop_pair; echo "stopped the Samba AD pair in $DIR" >&2; exit 0 ;;
  stop-dc) load_env; stop_one "${2:?$usage}"; ts "DC$2 stopped"; exit 0 ;;
  start-dc) load_env; start_one "${2:?$usage}"; ts "DC$2 started (pid $(cat "$(dc_dir "$2")/samba.pid"))"; exit 0 ;;
  replicate)
    load_env
    if [[ ${2:-2} == 1 ]]; then to=DC1; from=DC2; conf="$DIR/dc1/etc/smb.conf"; else to=DC2; from=DC1; conf="$DIR/dc2/etc/smb.conf"; fi
    samba-tool drs replicate "$to" "$from" "$AD_BASE_DN" -s "$conf" 2>&1 | grep -v '^WARNING' >&2
    exit 0 ;;
  inbound)
    load_env
    n=${2:?$usage}; what=${3:?$usage}
    case $what in on) opt=-DISABLE_INBOUND_REPL ;; off) opt=+DISABLE_INBOUND_REPL ;; *) echo "$usage" >&2; exit 2 ;; esac
    # Without -U the write of the nTDSDSA options is refused (50, no write property access).
    samba-tool drs options "DC$n" --dsa-option="$opt" -U "$AD_DOMAIN\\Administrator" \
      --password="$AD_ADMIN_PASSWORD" -s "$(dc_dir "$n")/etc/smb.conf" 2>&1 | grep -v '^WARNING' >&2
    exit 0 ;;
  notify)
    load_env
    v=${2:?$usage}
    [[ $v == default || $v =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }
    set_notify "$v"
    stop_one 2; stop_one 1; start_one 1; start_one 2
    sed -i "s/^AD_NOTIFY_INTERVAL=.*/AD_NOTIFY_INTERVAL=$v/" "$DIR/pair.env"
    ts "notify interval $v; both DCs restarted"
    exit 0 ;;
esac

# ---- start ----
IP1=${2:-127.0.0.5}
IP2=${3:-127.0.0.6}
REALM=${AD_REALM:-EXP.EXAMPLE.TEST}
DOMAIN=${AD_DOMAIN:-EXP}
export AD_REALM=$REALM AD_DOMAIN=$DOMAIN
realm_lc=${REALM,,}
NOTIFY=${AD_NOTIFY_INTERVAL:-1}
[[ $NOTIFY == default || $NOTIFY =~ ^[0-9]+$ ]] || { echo "AD_NOTIFY_INTERVAL must be seconds or 'default'" >&2; exit 2; }
SERVICES="ldap kdc rpc drepl kcc cldap"

stop_pair
rm -rf "$DIR"
mkdir -p "$DIR"
trap 'echo "samba-ad-pair.sh: failed at line $LINENO; cleaning up" >&2; stop_pair' ERR

# 1. DC2's address (DC1's is added by samba-ad.sh): Samba binds only addresses on an interface.
if ! ip -o addr show dev lo | grep -qw "inet $IP2/[0-9]*"; then
  ip addr add "$IP2/32" dev lo
  echo "$IP2" >"$DIR/added-ip"
fi
# 2. krb5.conf naming both KDCs by IP, for samba AND samba-tool (DRS binds with Kerberos only).
cat >"$DIR/krb5.conf" <<KRB5
[libdefaults]
	default_realm = $REALM
	dns_lookup_kdc = false
	dns_lookup_realm = false
	rdns = false
	dns_canonicalize_hostname = false
	udp_preference_limit = 1
[realms]
	$REALM = {
		kdc = $IP1:88
		kdc = $IP2:88
	}
[domain_realm]
	.$realm_lc = $REALM
	$realm_lc = $REALM
KRB5
# 3. Names of both DCs (marked, removed by stop).
printf '%s dc1.%s dc1 %s\n%s dc2.%s dc2 %s\n' "$IP1" "$realm_lc" "$MARK" "$IP2" "$realm_lc" "$MARK" >>/etc/hosts
ts "addresses, krb5.conf, /etc/hosts ready"

# 4. DC1: the project's single-DC script, with the services and settings replication needs.
extra="dreplsrv:notify_interval = $NOTIFY"
[[ $NOTIFY == default ]] && extra=""
SAMBA_SERVICES=$SERVICES AD_EXTRA_GLOBAL=$extra "$here/samba-ad.sh" start "$DIR/dc1" "$IP1" >/dev/null
# shellcheck disable=SC1091
source "$DIR/dc1/ad.env"
ts "DC1 provisioned and started on $IP1"
ldap1() { LDAPTLS_CACERT="$AD_CA_FILE" "$@" -H "ldaps://$IP1" -x -D "$AD_ADMIN_BIND" -w "$AD_ADMIN_PASSWORD"; }
guid_of() { # NTDS Settings objectGUID of server $1 (text form)
  local b64
  b64=$(ldap1 ldapsearch -LLL -o ldif-wrap=no -b "CN=NTDS Settings,CN=$1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,$AD_CONFIG_DN" \
        -s base objectGUID | sed -n 's/^objectGUID:: //p')
  [[ -n $b64 ]] || { echo "no NTDS Settings objectGUID for $1" >&2; return 1; }
  python3 -c 'import base64,sys,uuid; print(uuid.UUID(bytes_le=base64.b64decode(sys.argv[1])))' "$b64"
}

# 5. Before the join: DC1's DRS SPN (nobody registers it without the dnsupdate service).
G1=$(guid_of DC1)
printf 'dn: CN=DC1,OU=Domain Controllers,%s\nchangetype: modify\nadd: servicePrincipalName\nservicePrincipalName: E3514235-4B06-11D1-AB04-00C04FC2DCD2/%s/%s\n-\n' \
  "$AD_BASE_DN" "$G1" "$realm_lc" | ldap1 ldapmodify >/dev/null
echo "$IP1 $G1._msdcs.$realm_lc $MARK" >>/etc/hosts

# 6. Join DC2.
D2=$DIR/dc2
mkdir -p "$D2/run" "$D2/log" "$D2/tls"
samba-tool domain join "$realm_lc" DC -U "$AD_DOMAIN\\Administrator" --password="$AD_ADMIN_PASSWORD" \
  --server="$IP1" --targetdir="$D2" --dns-backend=NONE \
  --option="netbios name=DC2" --option="workgroup=$AD_DOMAIN" --option="realm=$REALM" \
  --option="interfaces=$IP2" --option="bind interfaces only=yes" \
  --option="server services=$SERVICES" --option="disable netbios=yes" \
  --option="pid directory=$D2/run" --option="ncalrpc dir=$D2/run/ncalrpc" \
  --option="winbindd socket directory=$D2/run/winbindd" --option="log file=$D2/log/log.%m" \
  --option="tls enabled=yes" --option="tls keyfile=$D2/tls/key.pem" \
  --option="tls certfile=$D2/tls/cert.pem" --option="tls cafile=$DIR/dc1/tls/ca.pem" \
  >"$D2/join.log" 2>&1 || { cat "$D2/join.log" >&2; false; }
extra2=$'\told password allowed period = 0\n\tldap server require strong auth = no'
[[ $NOTIFY != default ]] && extra2+=$'\n\t'"dreplsrv:notify_interval = $NOTIFY"
extra="$extra2" awk '{print} /^\[global\]/{print ENVIRON["extra"]}' "$D2/etc/smb.conf" >"$D2/etc/smb.conf.new"
mv "$D2/etc/smb.conf.new" "$D2/etc/smb.conf"
ts "DC2 joined"
# DC2's certificate from the same CA (SANs: its name and address).
(
  cd "$D2/tls"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=dc2.$realm_lc" -keyout key.pem -out srv.csr 2>/dev/null
  printf 'subjectAltName=DNS:dc2.%s,DNS:localhost,IP:%s\nextendedKeyUsage=serverAuth\n' "$realm_lc" "$IP2" >ext.cnf
  openssl x509 -req -in srv.csr -CA "$DIR/dc1/tls/ca.pem" -CAkey "$DIR/dc1/tls/ca.key" -CAcreateserial \
    -CAserial "$D2/tls/ca.srl" -days 30 -out cert.pem -extfile ext.cnf 2>/dev/null
  chmod 600 key.pem
)
# 7. DRS connects to <NTDS GUID>._msdcs.<domain>: DC2's exists only now.
G2=$(guid_of DC2)
echo "$IP2 $G2._msdcs.$realm_lc $MARK" >>/etc/hosts
cat >"$DIR/pair.env" <<ENV
$(cat "$DIR/dc1/ad.env")
AD_PAIR_DIR=$DIR
AD_PAIR_KRB5_CONF=$DIR/krb5.conf
AD_NOTIFY_INTERVAL=$NOTIFY
AD_DC1_NAME=DC1
AD_DC1_IP=$IP1
AD_DC1_URL=ldaps://dc1.$realm_lc:636
AD_DC1_PID=$(cat "$DIR/dc1/samba.pid")
AD_DC1_SMBCONF=$DIR/dc1/etc/smb.conf
AD_DC1_GUID=$G1
AD_DC2_NAME=DC2
AD_DC2_IP=$IP2
AD_DC2_URL=ldaps://dc2.$realm_lc:636
AD_DC2_PID=
AD_DC2_SMBCONF=$D2/etc/smb.conf
AD_DC2_GUID=$G2
ENV
sed -i "s/^AD_DC1_PID=.*/AD_DC1_PID=$(cat "$DIR/dc1/samba.pid")/" "$DIR/pair.env"
start_one 2
ts "DC2 started on $IP2"

# 8. Check: DC2 pulls the domain partition from DC1 now (fails loudly when DRS does not work).
samba-tool drs replicate DC2 DC1 "$AD_BASE_DN" -s "$D2/etc/smb.conf" >"$DIR/first-replicate.log" 2>&1 ||
  { cat "$DIR/first-replicate.log" >&2; false; }
samba-tool drs replicate DC1 DC2 "$AD_BASE_DN" -s "$DIR/dc1/etc/smb.conf" >>"$DIR/first-replicate.log" 2>&1 ||
  { cat "$DIR/first-replicate.log" >&2; false; }
ts "replication works both ways"
trap - ERR
cat "$DIR/pair.env"
