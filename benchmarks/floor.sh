#!/usr/bin/env bash
# The floor for benchmarks/fleet.py: the same deploy as deploylib's, by hand, in bash, with one
# OpenSSH ControlMaster connection per host and every host in parallel.
#
#   floor.sh APP_DIR RELEASE KEY KNOWN_HOSTS DEPLOY_TO HOST...
#
# Builds the artifact (tar -czf of APP_DIR), then per host: lock (mkdir), upload, unpack into releases/RELEASE, link shared log and .env,
# REVISION, switch current by symlink + mv -T, verify, append to the release log, keep 3,
# unlock. Prints nothing; exits non-zero if any host failed.
set -euo pipefail
app=$1 release=$2 key=$3 known=$4 to=$5
shift 5
control=$(mktemp -d)
trap 'rm -rf "$control"' EXIT
artifact=$control/artifact.tar.gz
tar -czf "$artifact" -C "$app" .

deploy_one() {
    local host=$1
    local ssh=(ssh -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=yes
               -o "UserKnownHostsFile=$known" -o ConnectTimeout=5
               -o ControlMaster=auto -o "ControlPath=$control/%h" -o ControlPersist=30
               "root@$host")
    "${ssh[@]}" "mkdir -p $to/.deploylib $to/releases $to/shared/log && mkdir $to/.deploylib/lock \
        && touch $to/shared/.env && chmod 600 $to/shared/.env"
    "${ssh[@]}" "cat > $to/.deploylib/$release.tar.gz" < "$artifact"
    "${ssh[@]}" "set -e; r=$to/releases/$release; mkdir -p \$r; tar -xzf $to/.deploylib/$release.tar.gz -C \$r; \
        rm -f $to/.deploylib/$release.tar.gz; rm -rf \$r/log \$r/.env; ln -s $to/shared/log \$r/log; \
        ln -s $to/shared/.env \$r/.env; echo '$release floor' > \$r/REVISION; \
        ln -sfn releases/$release $to/.current-$release; mv -T $to/.current-$release $to/current"
    "${ssh[@]}" "test -f $to/current/REVISION"
    "${ssh[@]}" "echo '{\"release\": \"$release\", \"outcome\": \"success\"}' >> $to/.deploylib/releases.jsonl; \
        cd $to/releases && ls -1 | sort | head -n -3 | xargs -r rm -rf; rm -rf $to/.deploylib/lock"
    "${ssh[@]}" -O exit 2>/dev/null || true
}

pids=()
for host in "$@"; do
    deploy_one "$host" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
