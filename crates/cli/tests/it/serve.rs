//! Issue 3 end to end: the real `airlock serve` binary between a client holding a
//! task token and a local TLS upstream (the fixture cloud API) that records what
//! it received.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Sandbox;

const UPSTREAM_TOKEN: &str = "fixture-api-token-REAL-0123456789";

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) struct Gateway {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Gateway {
    /// `airlock serve --config cfg` in the background, once its agent port (`listen`) accepts.
    pub(crate) fn start(s: &Sandbox, cfg: &std::path::Path, listen: u16) -> Self {
        let mut c = s.cmd(&["serve", "--config", cfg.to_str().unwrap()]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let gw = Gateway { child: c.spawn().unwrap(), addr: format!("127.0.0.1:{listen}").parse().unwrap() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(gw.addr).is_err() {
            assert!(Instant::now() < deadline, "airlock serve did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send one raw HTTP/1.1 request and return (status, body).
fn http(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn post(addr: SocketAddr, path: &str, auth: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The fixture cloud API over TLS on loopback (kept alive by the returned runtime), and an
/// initialised sandbox holding the fixture's CA certificate at the returned path.
fn cloud_and_sandbox() -> (tokio::runtime::Runtime, airlock_fixture::RunningFixture, Sandbox, std::path::PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = airlock_fixture::tls::TestPki::loopback().unwrap();
    let fixture = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        airlock_fixture::serve(l, Arc::new(airlock_fixture::World::standard(UPSTREAM_TOKEN)), Some(pki.server.clone()))
    });
    let s = Sandbox::new();
    s.init();
    let ca = s.dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    (rt, fixture, s, ca)
}

/// The fixture cloud as upstream `railway-staging` (and, with `production`, as
/// `railway-production`), each with its vault secret: the config file and the agent port.
fn railway_config(s: &Sandbox, fixture: &airlock_fixture::RunningFixture, ca: &std::path::Path, production: bool) -> (std::path::PathBuf, u16) {
    let (listen, admin) = (free_port(), free_port());
    let base = format!("https://127.0.0.1:{}", fixture.addr.port());
    let upstream = |name: &str, env: &str, secret: &str| {
        format!(
            "\n[[upstream]]\nname = \"{name}\"\nbase_url = \"{base}\"\nenvironment = \"{env}\"\nsecret = \"{secret}\"\ninject = {{ header = \"Authorization\", format = \"Bearer {{secret}}\" }}\nca_file = \"{}\"\n",
            ca.display()
        )
    };
    s.run_stdin(&["secret", "add", "railway-staging-token", "--env", "staging", "--upstream", "railway-staging"], UPSTREAM_TOKEN).ok();
    let mut text = format!("[gateway]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n");
    text += &upstream("railway-staging", "staging", "railway-staging-token");
    if production {
        s.run_stdin(&["secret", "add", "railway-prod-token", "--env", "production", "--upstream", "railway-production"], "prod-token-never-used").ok();
        text += &upstream("railway-production", "production", "railway-prod-token");
    }
    let cfg = s.dir.path().join("airlock.toml");
    std::fs::write(&cfg, text).unwrap();
    (cfg, listen)
}

#[test]
fn serve_injects_only_when_policy_allows() {
    let (_rt, fixture, s, ca) = cloud_and_sandbox();
    let (cfg, listen) = railway_config(&s, &fixture, &ca, true);
    let gw = Gateway::start(&s, &cfg, listen);

    let token =
        s.run(&["task", "start", "--agent", "coder", "--env", "staging", "--grant", "railway-staging:write", "--ttl", "10m"]).ok().stdout.trim().to_owned();
    let query = r#"{"query":"{ volumes { id environment } }"}"#;

    // Allowed: the phantom token is replaced by the real credential.
    let (status, body) = post(gw.addr, "/railway-staging/graphql", &format!("Bearer {token}"), query);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("vol-prod-db"), "{body}");
    let seen = fixture.world.requests();
    assert_eq!(seen.len(), 1);
    let auth: Vec<_> = seen[0].headers.iter().filter(|(k, _)| k == "authorization").map(|(_, v)| v.clone()).collect();
    assert_eq!(auth, [format!("Bearer {UPSTREAM_TOKEN}")], "exactly the real credential, once");
    assert!(!seen[0].headers.iter().any(|(_, v)| v.contains(&token)), "the upstream never sees the task token");
    assert!(!body.contains(UPSTREAM_TOKEN));

    // A staging token on the production upstream: refused, nothing forwarded.
    let (status, body) = post(gw.addr, "/railway-production/graphql", &format!("Bearer {token}"), query);
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(matches!(v["error"].as_str(), Some("cross_environment" | "not_granted")), "{body}");
    assert!(v["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    // Forged and missing tokens, traversal out of the route prefix.
    let (status, _) = post(gw.addr, "/railway-staging/graphql", "Bearer alk_forged", query);
    assert_eq!(status, 401);
    let (status, _) = post(gw.addr, "/railway-staging/graphql", "Bearer ", query);
    assert_eq!(status, 401);
    let (status, _) = post(gw.addr, "/railway-staging/%2e%2e/railway-production/graphql", &format!("Bearer {token}"), query);
    assert_eq!(status, 400);
    assert_eq!(fixture.world.requests().len(), 1, "no refused request reached the upstream");

    // End the task: the same token is refused within a second.
    let id = s.run_stdin(&["token", "inspect", "--json"], &token).ok().stdout;
    let id = serde_json::from_str::<serde_json::Value>(&id).unwrap()["task_id"].as_str().unwrap().to_owned();
    s.run(&["task", "end", &id]).ok();
    std::thread::sleep(Duration::from_millis(1200));
    let (status, body) = post(gw.addr, "/railway-staging/graphql", &format!("Bearer {token}"), query);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token_revoked"), "{body}");
    assert_eq!(fixture.world.requests().len(), 1);

    // Every decision is in the audit log, and no secret is.
    let audit = s.run(&["audit", "list", "--json", "--limit", "1000"]).ok().stdout;
    assert!(audit.contains("gateway."), "gateway decisions are audited");
    assert!(!audit.contains(UPSTREAM_TOKEN) && !audit.contains(&token));
    s.run(&["audit", "verify"]).ok();

    // What was granted and what was used: one POST (REST default: write) under `write`,
    // so the grant was as wide as its use.
    let usage = s.run(&["audit", "usage", "--task", &id, "--json"]).ok().stdout;
    let usage: serde_json::Value = serde_json::from_str(&usage).unwrap();
    let row = &usage[0];
    assert_eq!(row["task_id"], id.as_str(), "{usage}");
    assert_eq!((row["allowed_requests"].as_u64(), row["grants"][0]["grant"].as_str()), (Some(1), Some("railway-staging:write")), "{usage}");
    assert_eq!(row["grants"][0]["operations"], 1, "{usage}");
    assert_eq!((row["grants"][0]["highest"].as_str(), &row["grants"][0]["narrower"]), (Some("write"), &serde_json::Value::Null), "{usage}");
    assert!(row["refused_requests"].as_u64() >= Some(1), "the production request was refused: {usage}");
    let text = s.run(&["audit", "usage", "--task", &id]).ok().stdout;
    assert!(text.contains("railway-staging:write") && text.contains("1 operation(s), at most write"), "{text}");
    // A task that never used its grant is what `--unused` lists; the first one is not.
    let idle_token = s.run(&["task", "start", "--agent", "ops", "--env", "production", "--grant", "railway-production:read", "--ttl", "5m"]).ok().stdout;
    let idle = s.run_stdin(&["token", "inspect", "--json"], idle_token.trim()).ok().stdout;
    let idle = serde_json::from_str::<serde_json::Value>(&idle).unwrap()["task_id"].as_str().unwrap().to_owned();
    let unused: serde_json::Value = serde_json::from_str(&s.run(&["audit", "usage", "--unused", "--json"]).ok().stdout).unwrap();
    let ids: Vec<_> = unused.as_array().unwrap().iter().map(|r| r["task_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, std::slice::from_ref(&idle), "{unused}");
    assert!(s.run(&["audit", "usage", "--task", &idle]).ok().stdout.contains("never used"));
    // An unknown task is an error that names it.
    s.run(&["audit", "usage", "--task", "tsk_nope"]).fails(1, "tsk_nope");
    drop(gw);
}

/// Run `curl` with exactly `env` (plus `PATH`): POST `body` to `url` with a bearer token.
/// Returns (status, body).
fn curl(env: &serde_json::Map<String, serde_json::Value>, url: &str, bearer: &str, body: &str) -> (u16, String) {
    let mut c = std::process::Command::new("curl");
    c.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v.as_str().unwrap());
    }
    let out = c
        .args(["-q", "-sS", "--max-time", "15", "-X", "POST", "-H", "Content-Type: application/json", "-w", "\n%{http_code}"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {bearer}"))
        .arg("--data-binary")
        .arg(body)
        .arg(url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (code.trim().parse().unwrap_or(0), format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Issue 5 from the outside: `airlock serve` with `[gateway] forward_proxy = true`, the
/// variables `airlock env --task` prints, `curl` through `HTTPS_PROXY` trusting the airlock
/// CA against the local TLS GraphQL cloud; then `airlock run`, whose sandboxed child gets
/// `HTTPS_PROXY` and a readable CA copy but cannot read the CA key.
#[test]
fn serve_forward_proxy_with_airlock_env_and_run() {
    let (_rt, fixture, s, ca) = cloud_and_sandbox();
    s.run_stdin(&["secret", "add", "cloud-staging-token", "--env", "staging", "--upstream", "cloud-staging"], UPSTREAM_TOKEN).ok();
    let (listen, admin) = (free_port(), free_port());
    let cfg = s.dir.path().join("airlock.toml");
    let url = format!("https://127.0.0.1:{}/graphql", fixture.addr.port());
    std::fs::write(
        &cfg,
        format!(
            r#"[gateway]
listen = "127.0.0.1:{listen}"
admin_listen = "127.0.0.1:{admin}"
forward_proxy = true

[[upstream]]
name = "cloud-staging"
base_url = "{url}"
environment = "staging"
secret = "cloud-staging-token"
inject = {{ header = "Authorization", format = "Bearer {{secret}}" }}
ca_file = "{ca}"
protocol = "graphql"
env_vars = {{ key = "CLOUD_TOKEN" }}

[[upstream.operation]]
fields = ["volumeDelete"]
capability = "destroy"
resource = {{ argument = "volumeId" }}

[[inventory]]
id = "vol-prod-db"
environment = "production"
"#,
            ca = ca.display()
        ),
    )
    .unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    s.run(&["serve", "--config", cfg_arg, "--check"]).ok();
    let gw = Gateway::start(&s, &cfg, listen);
    // The CA key stays private in the state directory.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.home().join("ca.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let token =
        s.run(&["task", "start", "--agent", "coder", "--env", "staging", "--grant", "cloud-staging:write", "--ttl", "10m"]).ok().stdout.trim().to_owned();
    let info: serde_json::Value = serde_json::from_str(&s.run_stdin(&["token", "inspect", "--json"], &token).ok().stdout).unwrap();
    let task_id = info["task_id"].as_str().unwrap().to_owned();
    let env = s.run(&["env", "--config", cfg_arg, "--task", &task_id, "--json"]).ok().stdout;
    let env: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&env).unwrap();
    let get = |k: &str| env.get(k).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("airlock env did not print {k}: {env:?}")).to_owned();
    assert_eq!(get("HTTPS_PROXY"), format!("http://127.0.0.1:{listen}"));
    assert_eq!(get("https_proxy"), format!("http://127.0.0.1:{listen}"));
    for k in ["SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE"] {
        assert!(get(k).ends_with("/ca-bundle.pem"), "{k}");
    }
    assert!(get("NODE_EXTRA_CA_CERTS").ends_with("/ca.pem"));
    assert!(env.values().all(|v| !v.as_str().unwrap().contains("ca.key")));
    let phantom = get("CLOUD_TOKEN");
    assert!(phantom.starts_with("alk_"));

    // curl through HTTPS_PROXY with those variables: the real credential is injected.
    let (status, body) = curl(&env, &url, &phantom, r#"{"query":"{ volumes(environment: \"staging\") { id } }"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("vol-staging-db"), "{body}");
    let seen = fixture.world.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {UPSTREAM_TOKEN}")));
    assert!(!seen[0].headers.iter().any(|(_, v)| v.contains(&phantom)));
    // A destroy hidden behind an alias, on a production volume: refused, not forwarded.
    let (status, body) = curl(&env, &url, &phantom, r#"{"query":"mutation { list: volumeDelete(volumeId: \"vol-prod-db\") }"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross_environment") || body.contains("not_granted"), "{body}");
    assert_eq!(fixture.world.requests().len(), 1);

    // airlock run: the sandboxed child gets HTTPS_PROXY and a CA copy it can read, not the key.
    let key = s.home().join("ca.key");
    let script = format!(
        r#"echo "proxy=$HTTPS_PROXY"
echo "bundle=$CURL_CA_BUNDLE"
cat "$CURL_CA_BUNDLE" > /dev/null; echo "bundle_read=$?"
cat '{key}' > /dev/null 2>&1; echo "key_read=$?"
code=$(curl -q -sS --max-time 15 -o /dev/null -w '%{{http_code}}' -X POST -H "Authorization: Bearer $CLOUD_TOKEN" -H 'Content-Type: application/json' --data-binary '{{"query":"{{ me {{ name }} }}"}}' '{url}')
echo "curl=$code""#,
        key = key.display()
    );
    let mut c = s.cmd(&["run", "--config", cfg_arg, "--env", "staging", "--grant", "cloud-staging:read", "--", "sh", "-c", &script]);
    c.env("HOME", s.dir.path().join("home"));
    std::fs::create_dir_all(s.dir.path().join("home")).unwrap();
    let out = s.run_with(c, None).ok();
    let line = |k: &str| {
        out.stdout.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("no {k}= in {}\n{}", out.stdout, out.stderr)).to_owned()
    };
    assert_eq!(line("proxy"), format!("http://127.0.0.1:{listen}"));
    assert!(!line("bundle").starts_with(s.home().to_str().unwrap()), "the agent was pointed into the state directory");
    assert_eq!(line("bundle_read"), "0", "{}", out.stderr);
    assert_ne!(line("key_read"), "0", "the sandboxed agent could read the CA key");
    assert_eq!(line("curl"), "200", "{}", out.stderr);
    assert_eq!(fixture.world.requests().len(), 2);
    drop(gw);
}

#[test]
fn serve_refuses_rules_an_agent_could_write() {
    let s = Sandbox::new();
    s.init();
    let cfg_text = "[[upstream]]\npreset = \"anthropic\"\nenvironment = \"staging\"\nsecret = \"anthropic-key\"\n";
    // Inside a git work tree (a .git in any ancestor directory): refused, naming the rule.
    let repo = s.dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ops")).unwrap();
    let in_repo = repo.join("ops/airlock.toml");
    std::fs::write(&in_repo, cfg_text).unwrap();
    let r = s.run(&["serve", "--config", in_repo.to_str().unwrap(), "--check"]).fails(2, "git work tree");
    assert!(r.stderr.contains(&repo.display().to_string()) && r.stderr.contains(".git") && r.stderr.contains("/etc/airlock"), "{}", r.stderr);
    assert!(r.stderr.contains("config_in_workspace"), "{}", r.stderr);
    // Directly in a world-writable directory (like /tmp itself): refused.
    let shared = s.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    let in_shared = shared.join("airlock.toml");
    std::fs::write(&in_shared, cfg_text).unwrap();
    s.run(&["serve", "--config", in_shared.to_str().unwrap(), "--check"]).fails(2, "world-writable");
    // A policy file in a work tree is refused too, even when the config is not.
    std::fs::write(repo.join("ops/extra.cedar"), "").unwrap();
    let cfg = s.dir.path().join("airlock.toml");
    std::fs::write(&cfg, format!("{cfg_text}\n[policy]\nfiles = [\"{}\"]\n", repo.join("ops/extra.cedar").display())).unwrap();
    let r = s.run(&["serve", "--config", cfg.to_str().unwrap(), "--check"]).fails(2, "git work tree");
    assert!(r.stderr.contains("extra.cedar"), "{}", r.stderr);
}

#[test]
fn serve_model_preset_streams_through_with_the_task_token() {
    use airlock_fixture::anthropic::{Options, STREAMED_TEXT, Threaded};
    const KEY: &str = "sk-ant-REAL-cli-fixture-key-9876543210";
    let model = Threaded::start(Options::new(KEY).echoing()).unwrap();
    let s = Sandbox::new();
    s.init();
    let ca = s.dir.path().join("model-ca.pem");
    std::fs::write(&ca, &model.ca_pem).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let cfg = s.dir.path().join("airlock.toml");
    std::fs::write(&cfg, format!("[gateway]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n")).unwrap();
    let c = cfg.to_str().unwrap();
    s.run(&["upstream", "add", "anthropic", "--env", "staging", "--secret", "anthropic-key", "--config", c]).ok();
    // Point the preset at the local fixture (every preset field can be overridden).
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!("base_url = \"{}\"\nca_file = \"{}\"\n", model.base_url(), ca.display());
    std::fs::write(&cfg, text).unwrap();
    s.run_stdin(&["secret", "add", "anthropic-key", "--env", "staging", "--upstream", "anthropic"], KEY).ok();
    s.run(&["serve", "--config", c, "--check"]).ok();
    let gw = Gateway::start(&s, &cfg, listen);

    let mut start = s.cmd(&["task", "start", "--agent", "claude", "--env", "staging", "--grant", "anthropic:model", "--json"]);
    start.env("AIRLOCK_CONFIG", &cfg);
    let started: serde_json::Value = serde_json::from_str(&s.run_with(start, None).ok().stdout).unwrap();
    let env = s.run(&["env", "--config", c, "--task", started["id"].as_str().unwrap(), "--json"]).ok().stdout;
    let env: serde_json::Value = serde_json::from_str(&env).unwrap();
    assert_eq!(env["ANTHROPIC_BASE_URL"], format!("http://127.0.0.1:{listen}/anthropic"));
    let token = env["ANTHROPIC_API_KEY"].as_str().unwrap().to_owned();
    assert!(token.starts_with("alk_"), "the agent's key is a task token");

    let body = r#"{"model":"m","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, answer) = http(
        gw.addr,
        &format!(
            "POST /anthropic/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {token}\r\nanthropic-version: 2023-06-01\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("event: message_stop") && STREAMED_TEXT.iter().all(|t| answer.contains(t)), "{answer}");
    assert!(!answer.contains(KEY), "the real key reached the agent");
    // Masked in place (the mask may straddle two chunks of the chunked answer).
    assert!(answer.matches('*').count() >= KEY.len(), "the echoed key is masked: {answer}");
    assert!(model.requests().iter().all(|r| r.headers.iter().any(|(k, v)| k == "x-api-key" && v == KEY)));
    // The model grant is not a write grant.
    let (status, _) = http(
        gw.addr,
        &format!("POST /anthropic/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {token}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"),
    );
    assert_eq!(status, 403);
    assert_eq!(model.requests().len(), 1);
}

/// Issue 11: `kill -9` of `airlock serve` under load loses no record of an action that
/// reached the upstream: after the crash every request the upstream received has its
/// durable decision record (matched by request id), and the audit chain verifies.
#[test]
fn kill_9_under_load_loses_no_record_of_a_forwarded_request() {
    let (_rt, fixture, s, ca) = cloud_and_sandbox();
    let (cfg, listen) = railway_config(&s, &fixture, &ca, false);
    let mut start = s.cmd(&["task", "start", "--agent", "coder", "--env", "staging", "--grant", "railway-staging:write", "--ttl", "10m"]);
    start.env("AIRLOCK_CONFIG", &cfg);
    let token = s.run_with(start, None).ok().stdout.trim().to_owned();
    let mut gw = Gateway::start(&s, &cfg, listen);
    let addr = gw.addr;
    let query = r#"{"query":"{ volumes { id } }"}"#.to_owned();
    // Eight clients send requests as fast as they can until the gateway dies under them.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (stop, token, query) = (stop.clone(), token.clone(), query.clone());
            std::thread::spawn(move || {
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && ok < 2000 {
                    let r = std::panic::catch_unwind(|| post(addr, "/railway-staging/graphql", &format!("Bearer {token}"), &query));
                    match r {
                        Ok((200, _)) => ok += 1,
                        _ => break,
                    }
                }
                ok
            })
        })
        .collect();
    // Let load build up, then kill -9 in the middle of it.
    let t = Instant::now();
    while fixture.world.requests().len() < 150 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::process::Command::new("kill").args(["-9", &gw.child.id().to_string()]).status();
    let _ = gw.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: usize = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    let seen: Vec<String> =
        fixture.world.requests().iter().filter_map(|r| r.headers.iter().find(|(k, _)| k == "x-airlock-request-id").map(|(_, v)| v.clone())).collect();
    assert!(seen.len() >= 150, "load did not build up: {} requests reached the upstream", seen.len());
    assert!(answered >= 100, "{answered}");
    // After the crash, from the store alone (the gateway is gone).
    let log = s.run(&["audit", "list", "--action", "gateway.request", "--limit", "1000000", "--json"]).ok().stdout;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap();
    let allowed: std::collections::HashSet<&str> = entries.iter().filter(|e| e["outcome"] == "allowed").filter_map(|e| e["id"].as_str()).collect();
    let missing: Vec<&String> = seen.iter().filter(|id| !allowed.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "{} of {} forwarded requests have no durable record, e.g. {:?}", missing.len(), seen.len(), missing.first());
    s.run(&["audit", "verify"]).ok();
}
