#!/bin/sh
# The entry point of a job's container (docs/containers.md).
#   fabric-container sshd          a host of the job: sshd in the foreground
#   fabric-container COMMAND...    the launcher: runs COMMAND (mpirun ...)
# Either way the container first takes the job's ssh key from
# /etc/fabric/ssh (mounted by the compose file) and makes its own host key.
set -eu
if [ ! -s /etc/fabric/ssh/id_ed25519 ] || [ ! -s /etc/fabric/ssh/authorized_keys ]; then
    echo "fabric-container: no job key in /etc/fabric/ssh (id_ed25519 and authorized_keys); scripts/containers.sh makes one, or mount your own" >&2
    exit 2
fi
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key

# Ranks started over ssh get sshd's clean environment, not the container's:
# the container's fabric settings (device profile, link, faults) reach them
# through ~/.ssh/environment, which sshd_config lets through by name.
# Variables set but empty are left out: empty means "not set" here.
mkdir -p /root/.ssh
chmod 700 /root/.ssh
{
    env | grep -E '^(FABRIC|MPI)_[A-Za-z0-9_]*=.' || true
    echo "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
} > /root/.ssh/environment
for name in $(env | sed -n 's/^\(\(FABRIC\|MPI\)_[A-Za-z0-9_]*\)=$/\1/p'); do unset "$name"; done

# The launcher: wait until every host in the host file answers ssh, so that
# a job does not race its hosts' start, and name those that never do.
wait_for_hosts() {
    file="${OMPI_MCA_orte_default_hostfile:-${HYDRA_HOST_FILE:-}}"
    [ -n "${FABRIC_WAIT_FOR_HOSTS:-}" ] && [ "${FABRIC_WAIT_FOR_HOSTS}" != 0 ] && [ -n "$file" ] || return 0
    hosts=$(sed -e 's/#.*//' -e 's/[: ].*//' "$file" | grep -v '^$' | sort -u)
    deadline=$(( $(date +%s) + FABRIC_WAIT_FOR_HOSTS ))
    while :; do
        missing=""
        for host in $hosts; do
            ssh -o ConnectTimeout=2 "$host" true 2>/dev/null || missing="$missing $host"
        done
        [ -z "$missing" ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "fabric-container: host(s)$missing of $file did not answer ssh within ${FABRIC_WAIT_FOR_HOSTS} s (not started, stopped, or not on this network)" >&2
            exit 1
        fi
        sleep 0.5
    done
}

case "${1:-sshd}" in
    sshd)
        echo "fabric-container: host $(hostname) ready (sshd)" >&2
        exec /usr/sbin/sshd -D -e ;;
    *)
        wait_for_hosts
        exec "$@" ;;
esac
