#!/usr/bin/env bash
# The local gateway (nginx, as in docker-compose.yml) in front of several command-api instances
# and the query API, on 127.0.0.1. `./dev run --instances N` and the cluster tests run it.
#
#   scripts/gateway.sh run DIR PORT QUERY_PORT COMMAND_PORT…
#
# writes DIR/nginx.conf and runs nginx in the foreground (exec: the caller's pid is nginx's
# master; SIGTERM stops it). Routes as deploy/nginx/default.conf does: GET and HEAD under
# /api/v1/ to the query API, everything else (writes, sign-in) to the command APIs, round-robin.
# An instance that refuses connections (killed) is skipped and the request goes to the next;
# a request already sent is not sent again (a POST may have been decided: retrying it is the
# client's, with its Idempotency-Key).
set -euo pipefail
[ "${1:-}" = run ] && [ $# -ge 5 ] || { sed -n '2,12p' "$0"; exit 2; }
dir=$2 port=$3 query=$4
shift 4
mkdir -p "$dir/tmp"
dir=$(cd "$dir" && pwd)
servers=""
for command_port in "$@"; do
  servers+="        server 127.0.0.1:$command_port max_fails=1 fail_timeout=2s;"$'\n'
done
cat >"$dir/nginx.conf" <<CONF
# Written by scripts/gateway.sh; rewritten at each start.
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream command_api {
$servers        keepalive 64;
        keepalive_timeout 30s;
    }
    upstream query_api {
        server 127.0.0.1:$query;
        keepalive 32;
        keepalive_timeout 30s;
    }
    map \$request_method \$api_v1 {
        GET     query_api;
        HEAD    query_api;
        default command_api;
    }
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 64k;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_read_timeout 15s;
        proxy_send_timeout 15s;
        proxy_connect_timeout 1s;
        proxy_next_upstream error timeout;
        location = /healthz { default_type text/plain; return 200 "ok\n"; }
        location /api/v1/auth/ { proxy_pass http://command_api; }
        location /api/v1/ { proxy_pass http://\$api_v1; }
        location /api/docs/query { proxy_pass http://query_api; }
        location /api/docs { proxy_pass http://command_api; }
        location / {
            default_type application/problem+json;
            return 404 '{"type":"urn:promo:problem:not-found","title":"Not Found","status":404,"detail":"no such path","code":"NOT_FOUND"}';
        }
    }
}
CONF
exec nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
