#!/bin/sh
# contain.sh — contain the users of an incident through warden's containment API and wait
# until each is contained on every surface (docs/playbooks/README.md).
#
# Usage: contain.sh LIST INCIDENT REASON USER...
#   WARDEN_URL       warden's API, e.g. https://warden.corp.example:8443
#   WARDEN_KEY       an API key with the respond scope
#   WARDEN_TIMEOUT   seconds to wait for the receipt to be complete (default 60)
#   WARDEN_EXPIRES   how long the containment lasts (default 7d)
#   WARDEN_CURL      extra curl options, e.g. "--cacert /etc/warden/ca.pem"
#
# Exit status: 0 contained everywhere; 1 not complete before the timeout (what is missing
# is printed); 2 a user could not be resolved to an account (nothing is assumed about it);
# 3 warden refused the request (its problem detail is printed).
#
# The idempotency key is derived from the incident and the users, so a playbook step that
# is retried (after a timeout, a crash) gets the same receipt and contains once.
set -eu

[ $# -ge 4 ] || { echo "usage: $0 LIST INCIDENT REASON USER..." >&2; exit 64; }
list=$1 incident=$2 reason=$3
shift 3
: "${WARDEN_URL:?set WARDEN_URL}" "${WARDEN_KEY:?set WARDEN_KEY}"
timeout=${WARDEN_TIMEOUT:-60}
expires=${WARDEN_EXPIRES:-7d}

key="contain-$(printf '%s\n' "$list" "$incident" "$@" | sha256sum | cut -c1-32)"
body=$(jq -n --arg list "$list" --arg incident "$incident" --arg reason "$reason" \
  --arg expires "$expires" \
  '{list: $list, incident: $incident, reason: $reason, expires_in: $expires,
    principals: $ARGS.positional}' --args "$@")

api() { # METHOD PATH [BODY]: the answer on stdout; a problem+json detail and exit 3 on error
  out=$(curl -sS ${WARDEN_CURL:-} -X "$1" -H "Authorization: Bearer $WARDEN_KEY" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
    ${3:+--data "$3"} -w '\n%{http_code}' "$WARDEN_URL$2") || exit 3
  code=$(printf '%s' "$out" | tail -n 1)
  out=$(printf '%s' "$out" | sed '$d')
  case $code in
    2??) printf '%s\n' "$out" ;;
    *) printf '%s\n' "$out" | jq -r '"warden: \(.title): \(.detail)"' >&2; exit 3 ;;
  esac
}

receipt=$(api POST /v1/contain "$body") || exit $?
id=$(printf '%s' "$receipt" | jq -r .id)
printf '%s' "$receipt" | jq -r '.principals[] | "\(.principal) -> \(.account // "-") (\(.outcome))"'
unresolved=$(printf '%s' "$receipt" \
  | jq -r '.principals[] | select(.outcome == "unresolved") | "  \(.principal): \(.error)"')
if [ -n "$unresolved" ]; then
  printf '%s: could not resolve:\n%s\n' "$id" "$unresolved" >&2
  exit 2
fi

deadline=$(( $(date +%s) + timeout ))
while :; do
  receipt=$(api GET "/v1/contain/$id") || exit $?
  if [ "$(printf '%s' "$receipt" | jq -r .complete)" = true ]; then
    echo "$id: contained everywhere"
    printf '%s' "$receipt" | jq -r '.principals[] | .account as $a | .surfaces[]
      | "  \($a): \(.surface) \(.target): \(.state) at \(.since_ms // "-")"'
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$id: not contained everywhere after ${timeout}s; missing:" >&2
    printf '%s' "$receipt" | jq -r '.missing[] | "  " + .' >&2
    exit 1
  fi
  sleep 1
done
