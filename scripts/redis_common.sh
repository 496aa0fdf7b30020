# Shared by the Redis test scripts (cluster_test.sh, negotiated_cluster_test.sh); source it.
# install_redis: installs redis-server from the system packages when it is missing (say is the
# caller's logging function). free_port SOCK_STREAM|SOCK_DGRAM: a free port on 127.0.0.1.
install_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        say "installing redis-server"
        local sudo=
        [ "$(id -u)" = 0 ] || sudo=sudo
        timeout 900 $sudo apt-get update -qq
        timeout 900 $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends redis-server
    fi
}
free_port() {
    python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.$1); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"
}
