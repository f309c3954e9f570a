# Sourced by the gateway benchmark scripts: the nginx both compare against.
# start_bench_nginx WORK UP NGX — two workers serving, on 127.0.0.1:UP, a static 27-byte
# JSON upstream and, on 127.0.0.1:NGX, a reverse proxy to it that injects
# `Authorization` with proxy_set_header over a keep-alive pool. pid file: WORK/nginx.pid.
start_bench_nginx() {
  local work=$1 up=$2 ngx=$3
  cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  client_max_body_size 0;
  upstream backend { server 127.0.0.1:$up; keepalive 128; }
  server {
    listen 127.0.0.1:$up;
    location / { default_type application/json; return 200 '{"ok":true,"items":[1,2,3]}'; }
  }
  server {
    listen 127.0.0.1:$ngx;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host 127.0.0.1:$up;
      proxy_set_header Authorization "Bearer sk-bench-0123456789abcdef0123456789";
    }
  }
}
NGINX
  nginx -c "$work/nginx.conf" -p "$work"
}
