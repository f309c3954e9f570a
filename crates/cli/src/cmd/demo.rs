//! `airlock demo`: the incident, replayed twice on loopback — without airlock, then with it.
//!
//! An AI coding agent on a staging task finds a cloud API token in its workspace and, within
//! seconds, deletes the production volume and then its backups. This command starts a fixture
//! cloud API (TLS on 127.0.0.1, `airlock-fixture`), writes a workspace whose `.env` holds that
//! API's token, and runs the scripted agent (`airlock __demo-agent`, its own process) twice:
//!
//! 1. **without airlock** — the agent finds the token and destroys production; we print what
//!    was destroyed and how long it took (the replay is only meaningful if this happens);
//! 2. **with airlock** — this very binary, step by step in a temporary state directory:
//!    `init`, the preflight of `airlock run` refusing the workspace, `airlock scan --fix`
//!    moving the token into the vault, `airlock serve` (real child process, forward proxy),
//!    and `airlock run --env staging …` starting the same agent. Its code is the same; only
//!    its environment differs (`HTTPS_PROXY` points at the gateway, its API token is a task
//!    token). Then the fixture's state is checked: nothing in production may be lost.
//!
//! It ends with the run's audit trail and exits 0 only if every protection held; otherwise
//! it exits 1 naming each protection that failed. Wiring only: every decision is made by the
//! commands it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_fixture::{World, agent::Step};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::app::{CmdResult, Ctx, Failure, color, exit};

/// Run the incident replay (or, with `--broker`, the broker walkthrough).
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Keep the temporary directory (state, workspaces, configuration) and print its path.
    #[arg(long)]
    keep: bool,
    /// Run the agent without the Landlock sandbox (the default when the kernel has no Landlock).
    #[arg(long)]
    no_sandbox: bool,
    /// Instead of the incident replay, walk through the broker: secrets, task tokens, attenuation, revocation.
    #[arg(long)]
    broker: bool,
    /// Testing only: switch off the built-in policies and the demo's approval policy, so the
    /// replay shows (and exits 1 on) what happens when the protections do not hold.
    #[arg(long, hide = true)]
    disable_protections: bool,
}

/// The built-in policies `--disable-protections` switches off.
const WEAKENED: &[&str] =
    &["airlock-cross-environment", "airlock-production-destroy-approval", "airlock-backup-destroy-separation", "airlock-backup-destroy-purpose"];

/// The upstream that holds the moved (all-environment) token.
const PROD_UPSTREAM: &str = "railway-production";
/// The upstream a staging task reaches.
const STAGING_UPSTREAM: &str = "railway-staging";

fn heading(title: &str) {
    let line = "═".repeat(78);
    if color() {
        println!("\n\x1b[1m{line}\n {title}\n{line}\x1b[0m");
    } else {
        println!("\n{line}\n {title}\n{line}");
    }
}

fn shown(cmd: &str) {
    if color() {
        println!("\n\x1b[36m$ {cmd}\x1b[0m");
    } else {
        println!("\n$ {cmd}");
    }
}

fn indent(text: &str) {
    for l in text.lines() {
        println!("    {l}");
    }
}

/// The protections checked, in order, with whether each held.
#[derive(Default)]
struct Checks {
    results: Vec<(String, bool, String)>,
}

impl Checks {
    fn check(&mut self, what: &str, held: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let (mark, word) = if held { ("✔", "") } else { ("✘", "  FAILED") };
        if detail.is_empty() {
            println!("  {mark} {what}{word}");
        } else {
            println!("  {mark} {what}{word} — {detail}");
        }
        self.results.push((what.to_owned(), held, detail));
    }
    fn failed(&self) -> Vec<&str> {
        self.results.iter().filter(|(_, h, _)| !h).map(|(w, _, _)| w.as_str()).collect()
    }
}

/// What one agent process reported (its JSON lines) and how it ended.
#[derive(Default)]
struct AgentReport {
    found: Option<String>,
    steps: Vec<Step>,
    ms: u64,
    code: i32,
    stderr: String,
}

impl AgentReport {
    fn parse(stdout: &str, stderr: String, code: i32) -> Self {
        let mut r = Self { code, stderr, ..Self::default() };
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            if let Some(f) = v.get("found") {
                r.found = f.as_str().map(str::to_owned);
            } else if let Some(s) = v.get("step") {
                r.steps.push(Step {
                    action: s["action"].as_str().unwrap_or_default().to_owned(),
                    target: s["target"].as_str().unwrap_or_default().to_owned(),
                    status: s["status"].as_u64().unwrap_or(0) as u16,
                    ok: s["ok"].as_bool().unwrap_or(false),
                    detail: s["detail"].as_str().unwrap_or_default().to_owned(),
                });
            } else if let Some(d) = v.get("done") {
                r.ms = d["ms"].as_u64().unwrap_or(0);
            }
        }
        r
    }

    fn step(&self, action: &str, target: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.action == action && s.target == target)
    }

    fn print(&self) {
        match &self.found {
            Some(f) => println!("    agent: found an API token in {f}"),
            None => println!("    agent: found no API token"),
        }
        for s in &self.steps {
            let what = if s.target.is_empty() { s.action.clone() } else { format!("{} {}", s.action, s.target) };
            let outcome = match (s.ok, s.action.ends_with("Delete")) {
                (true, true) => "DESTROYED".to_owned(),
                (true, false) => "ok".to_owned(),
                (false, _) => format!("refused: {}", s.detail),
            };
            let status = if s.status == 0 { "---".to_owned() } else { s.status.to_string() };
            println!("    agent: {what:<30} → {status} {outcome}");
        }
    }
}

/// Runs this binary with a fixed environment, printing each command as a user would type it.
struct Airlock {
    exe: PathBuf,
    home: PathBuf,
    config: PathBuf,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Airlock {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.exe);
        c.args(args)
            .env("AIRLOCK_HOME", &self.home)
            .env("AIRLOCK_CONFIG", &self.config)
            .env("NO_COLOR", "1")
            .env_remove("AIRLOCK_MASTER_KEY")
            .env_remove("AIRLOCK_PASSPHRASE")
            .env_remove("AIRLOCK_ADMIN_URL")
            .env_remove(airlock_fixture::agent::TOKEN_VAR)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Run `airlock ARGS`; show `display` (or the args) and, unless `quiet`, the output.
    async fn run(&self, args: &[&str], display: Option<&str>, stdin: Option<&str>, quiet: bool) -> Result<Output, Failure> {
        shown(&display.map(str::to_owned).unwrap_or_else(|| format!("airlock {}", args.join(" "))));
        let mut c = self.command(args);
        self.finish(&mut c, stdin, quiet).await
    }

    async fn finish(&self, c: &mut tokio::process::Command, stdin: Option<&str>, quiet: bool) -> Result<Output, Failure> {
        use tokio::io::AsyncWriteExt;
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().map_err(|e| Failure::internal(format!("cannot run {}: {e}", self.exe.display())))?;
        if let (Some(s), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(s.as_bytes()).await.map_err(|e| Failure::internal(e.to_string()))?;
        }
        let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .map_err(|_| Failure::internal("a demo step took longer than two minutes"))?
            .map_err(|e| Failure::internal(e.to_string()))?;
        let o = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !quiet {
            indent(&o.stdout);
            indent(&o.stderr);
            if o.code != 0 {
                println!("    (exit code {})", o.code);
            }
        }
        Ok(o)
    }
}

/// A free loopback port (bound and released; the demo's children bind it right after).
fn free_port() -> Result<u16, Failure> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::internal(format!("cannot bind a loopback port: {e}")))?;
    Ok(l.local_addr().map_err(|e| Failure::internal(e.to_string()))?.port())
}

/// Start a fixture cloud API with a fresh world on 127.0.0.1 (TLS).
async fn start_fixture(token: &str, pki: &airlock_fixture::tls::TestPki) -> Result<airlock_fixture::RunningFixture, Failure> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| Failure::internal(format!("cannot bind the fixture API: {e}")))?;
    Ok(airlock_fixture::serve(listener, Arc::new(World::standard(token)), Some(Arc::clone(&pki.server))))
}

fn api_url(addr: SocketAddr) -> String {
    format!("https://{addr}/graphql")
}

/// The workspace of a staging task, with the all-environment token in `.env`.
fn write_workspace(dir: &Path, token: &str) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::internal(format!("cannot write the demo workspace: {e}"));
    std::fs::create_dir_all(dir.join("src")).map_err(io)?;
    std::fs::write(dir.join("README.md"), "# shop\n\nTask: tidy up the staging database volume.\n").map_err(io)?;
    std::fs::write(dir.join("src/main.rs"), "fn main() {\n    println!(\"shop\");\n}\n").map_err(io)?;
    std::fs::write(
        dir.join(".env"),
        format!(
            "# local settings — never committed (.gitignore)\nDATABASE_URL=postgres://localhost:5432/shop_dev\n{}={token}\n",
            airlock_fixture::agent::TOKEN_VAR
        ),
    )
    .map_err(io)?;
    std::fs::write(dir.join(".gitignore"), ".env\ntarget/\n").map_err(io)?;
    Ok(())
}

/// Run the agent directly (no airlock), as a separate process.
async fn agent_without_airlock(exe: &Path, workspace: &Path, api: &str, ca: &Path) -> Result<AgentReport, Failure> {
    let mut c = tokio::process::Command::new(exe);
    c.arg("__demo-agent")
        .arg("--workspace")
        .arg(workspace)
        .arg("--api")
        .arg(api)
        .current_dir(workspace)
        .env("SSL_CERT_FILE", ca)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove(airlock_fixture::agent::TOKEN_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .map_err(|_| Failure::internal("the agent did not finish within a minute"))?
        .map_err(|e| Failure::internal(format!("cannot start the agent: {e}")))?;
    Ok(AgentReport::parse(&String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr).into_owned(), out.status.code().unwrap_or(-1)))
}

/// `airlock serve` as a child process, stopped with SIGTERM.
struct Serve {
    child: tokio::process::Child,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    async fn start(a: &Airlock, gateway: SocketAddr) -> Result<Self, Failure> {
        shown("airlock serve &");
        let mut c = a.command(&["serve"]);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| Failure::internal(format!("cannot start airlock serve: {e}")))?;
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                l.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(gateway).await.is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                indent(&log);
                return Err(Failure::internal(format!("airlock serve exited ({st}) before listening")));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(Failure::internal("airlock serve did not start listening within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        indent(&log.lock().unwrap_or_else(|p| p.into_inner()).join("\n"));
        Ok(Self { child, log })
    }

    /// SIGTERM, wait (the audit writer drains), print what it said since start.
    async fn stop(mut self) {
        let shown_lines = self.log.lock().unwrap_or_else(|p| p.into_inner()).len();
        if let Some(pid) = self.child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        for l in log.iter().skip(shown_lines) {
            println!("    {l}");
        }
    }
}

/// The gateway configuration for the fixture API: one upstream per environment on the same
/// endpoint, GraphQL operations classified, resources placed by a static inventory.
fn config_text(
    api: &str,
    fixture_ca: &Path,
    gateway: SocketAddr,
    admin: SocketAddr,
    policies: Option<&Path>,
    prod_secret: &str,
    staging_secret: &str,
) -> String {
    let upstream = |name: &str, env: &str, secret: &str| {
        format!(
            r#"[[upstream]]
name = "{name}"
base_url = "{api}"
environment = "{env}"
secret = "{secret}"
inject = {{ header = "Authorization", format = "Bearer {{secret}}" }}
ca_file = "{ca}"
protocol = "graphql"
env_vars = {{ key = "{var}" }}

[[upstream.operation]]
fields = ["volumeDelete"]
capability = "destroy"
tier = "primary"
resource = {{ argument = "volumeId" }}

[[upstream.operation]]
fields = ["backupDelete"]
capability = "destroy"
tier = "backup"
resource = {{ argument = "backupId" }}

"#,
            ca = fixture_ca.display(),
            var = airlock_fixture::agent::TOKEN_VAR,
        )
    };
    let inv = |id: &str, env: &str, tier: &str| format!("[[inventory]]\nid = \"{id}\"\nenvironment = \"{env}\"\ntier = \"{tier}\"\n\n");
    let mut s = format!(
        "# airlock demo: the fixture cloud API serves every environment from one GraphQL endpoint,\n\
         # modelled as one upstream per environment plus an inventory of where each resource lives.\n\n\
         [gateway]\nlisten = \"{gateway}\"\nadmin_listen = \"{admin}\"\nforward_proxy = true\n\n\
         [policy]\n{}\n\n",
        match policies {
            Some(p) => format!("files = [\"{}\"]", p.display()),
            None => format!("# --disable-protections: built-in rules off, no operator policy\ndisable = {WEAKENED:?}"),
        }
    );
    s.push_str(&upstream(PROD_UPSTREAM, "production", prod_secret));
    s.push_str(&upstream(STAGING_UPSTREAM, "staging", staging_secret));
    s.push_str(&inv("vol-prod-db", "production", "primary"));
    s.push_str(&inv("bkp-prod-db-1", "production", "backup"));
    s.push_str(&inv("bkp-prod-db-2", "production", "backup"));
    s.push_str(&inv("vol-staging-db", "staging", "primary"));
    s.push_str(&inv("bkp-staging-db-1", "staging", "backup"));
    s
}

/// The operator policy of the demo: destroying a volume waits for a human in every environment.
const DESTROY_APPROVAL_POLICY: &str = r#"// Operator policy (airlock demo): a task may hold a destroy grant, but every destroy
// waits for a human approval — in staging too. Built-in rules still apply first: a
// cross-environment or backup destroy is denied outright, approval or not.
@id("demo-destroy-needs-approval")
@approval("required")
@reason("destroying a resource needs a human approval, in every environment")
forbid (principal, action == Airlock::Action::"destroy", resource)
unless { context.approved };
"#;

fn io_err(what: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::internal(format!("{what}: {e}"))
}

pub async fn run(_ctx: &Ctx, a: DemoArgs) -> CmdResult {
    if a.broker {
        return crate::cmd::demo_broker::run(a.keep);
    }
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find the airlock binary: {e}")))?;
    let tmp = tempfile::Builder::new().prefix("airlock-demo-").tempdir().map_err(io_err("cannot create a temporary directory"))?;
    let root = std::fs::canonicalize(tmp.path()).map_err(io_err("temporary directory"))?;
    let mut checks = Checks::default();

    // One token, valid on every environment — like the incident's. Random per run, in the
    // format of a Railway API token (a UUID), so nothing secret-looking lives in this file.
    let token = uuid::Uuid::new_v4().to_string();
    let pki = airlock_fixture::tls::TestPki::loopback().map_err(|e| Failure::internal(e.to_string()))?;
    let fixture_ca = root.join("fixture-ca.pem");
    std::fs::write(&fixture_ca, &pki.ca_pem).map_err(io_err("cannot write the fixture CA"))?;

    heading("airlock demo — an AI agent, a token in .env, and a production database");
    println!(
        "An AI coding agent working on a staging task finds a cloud API token in its workspace.\n\
         The token works on every environment. Within seconds the agent deletes the production\n\
         database volume, then its backups. Nothing was hacked: the token was valid.\n\n\
         This demo replays that on loopback, twice, with the same scripted agent (no model):\n\
         once without airlock and once with it. Everything lives in {}.",
        root.display()
    );

    // ---------------------------------------------------------------- run 1
    heading("Run 1 — without airlock");
    let fixture1 = start_fixture(&token, &pki).await?;
    let api1 = api_url(fixture1.addr);
    let ws1 = root.join("run1/workspace");
    write_workspace(&ws1, &token)?;
    println!(
        "Fixture cloud API: {api1} (TLS), project \"shop\":\n\
         \x20 production: volume vol-prod-db, backups bkp-prod-db-1, bkp-prod-db-2\n\
         \x20 staging:    volume vol-staging-db, backup bkp-staging-db-1\n\
         Workspace {} has a .env with {}=<the API token>.",
        ws1.display(),
        airlock_fixture::agent::TOKEN_VAR
    );
    shown(&format!("cd {} && airlock __demo-agent --workspace . --api {api1}", ws1.display()));
    let r1 = agent_without_airlock(&exe, &ws1, &api1, &fixture_ca).await?;
    r1.print();
    if r1.code != 0 {
        indent(&r1.stderr);
    }
    let w1 = &fixture1.world;
    let destroyed = w1.destroyed();
    let prod_lost: Vec<&String> = destroyed.iter().filter(|id| id.contains("prod")).collect();
    println!();
    if destroyed.is_empty() {
        println!("Nothing was destroyed.");
    } else {
        println!("Destroyed in {} ms: {}", r1.ms, destroyed.join(", "));
        println!(
            "Production volumes left: {}; production backups left: {}.",
            w1.volumes().iter().filter(|v| v.environment == "production").count(),
            w1.backups().iter().filter(|b| b.environment == "production").count(),
        );
    }
    let incident = ["vol-prod-db", "bkp-prod-db-1", "bkp-prod-db-2"].iter().all(|id| destroyed.iter().any(|d| d == id));
    println!();
    checks.check(
        "the replay is real: without airlock the agent destroyed the production volume and its backups",
        incident,
        format!("{} production resource(s) destroyed in {} ms", prod_lost.len(), r1.ms),
    );
    drop(fixture1);

    // ---------------------------------------------------------------- run 2
    heading("Run 2 — with airlock");
    let fixture2 = start_fixture(&token, &pki).await?;
    let api2 = api_url(fixture2.addr);
    let ws2 = root.join("run2/workspace");
    write_workspace(&ws2, &token)?;
    println!("A fresh copy of the cloud ({api2}) and of the workspace ({}).", ws2.display());
    let home = root.join("state");
    let config = root.join("airlock.toml");
    let air = Airlock { exe: exe.clone(), home: home.clone(), config: config.clone() };
    let gateway: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let admin: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_port()?));

    println!("\n1. Create airlock's state directory (vault master key, token signing key, audit log).");
    let o = air.run(&["init"], None, None, false).await?;
    if o.code != 0 {
        return Err(Failure::internal("airlock init failed (see above)"));
    }

    println!("\n2. Try to start the agent under airlock: the preflight scan looks at its workspace first.");
    let sandbox = sandbox_flag(a.no_sandbox);
    let run_args = |extra: &[String]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--agent".into(),
            "demo-agent".into(),
            "--env".into(),
            "staging".into(),
            "--grant".into(),
            format!("{STAGING_UPSTREAM}:read"),
            "--grant".into(),
            format!("{STAGING_UPSTREAM}:destroy"),
            "--ttl".into(),
            "10m".into(),
            "--purpose".into(),
            "tidy up the staging database volume".into(),
            "--workspace".into(),
            ws2.display().to_string(),
        ];
        v.extend(extra.iter().cloned());
        v
    };
    // Before any configuration exists: the preflight is about the workspace alone.
    let pre_args = {
        let mut v = run_args(&sandbox.0);
        v.extend([
            "--".into(),
            exe.display().to_string(),
            "__demo-agent".into(),
            "--workspace".into(),
            ws2.display().to_string(),
            "--api".into(),
            api2.clone(),
        ]);
        v
    };
    let pre_refs: Vec<&str> = pre_args.iter().map(String::as_str).collect();
    let display = format!(
        "airlock run --env staging --grant {STAGING_UPSTREAM}:read --grant {STAGING_UPSTREAM}:destroy{} -- airlock __demo-agent …",
        if sandbox.1 { " --no-sandbox" } else { "" }
    );
    let mut pre_cmd = air.command(&pre_refs);
    pre_cmd.env_remove("AIRLOCK_CONFIG").current_dir(&ws2);
    shown(&display);
    let pre = air.finish(&mut pre_cmd, None, false).await?;
    let refused = pre.code == i32::from(airlock_run::EXIT_PREFLIGHT) && pre.stderr.contains(".env");
    checks.check("the preflight scan refuses to start an agent whose workspace holds a token", refused, format!("exit code {}", pre.code));

    println!("\n3. Move the token into the vault. It is the all-environment token, so it is filed as");
    println!("   production's, for the upstream that serves production.");
    let ws2s = ws2.display().to_string();
    let o = air.run(&["scan", &ws2s], None, None, false).await?;
    checks.check("`airlock scan` reports the token in .env", o.code == 1 && o.stdout.contains(".env"), format!("exit code {}", o.code));
    let o = air.run(&["scan", "--fix", "--yes", "--no-progress", "--secret-env", "production", "--upstream", PROD_UPSTREAM, &ws2s], None, None, false).await?;
    let dotenv = std::fs::read_to_string(ws2.join(".env")).unwrap_or_default();
    let prod_secret = dotenv.lines().find_map(|l| l.split_once("=airlock://secret/").map(|(_, n)| n.trim().to_owned())).unwrap_or_default();
    println!("    .env now reads:");
    for l in dotenv.lines() {
        println!("      {l}");
    }
    checks.check(
        "`airlock scan --fix` moved the token into the vault, leaving a reference",
        o.code == 0 && !dotenv.contains(&token) && !prod_secret.is_empty(),
        if prod_secret.is_empty() { "no airlock://secret/ reference in .env".to_owned() } else { format!("vault secret {prod_secret}") },
    );

    println!("\n4. The staging upstream gets its own secret. (On a real platform: a staging-scoped token.");
    println!("   The fixture API has one token for everything, so it is stored again, filed as staging's.)");
    let staging_secret = "railway-staging-token";
    air.run(
        &["secret", "add", staging_secret, "--env", "staging", "--tier", "primary", "--upstream", STAGING_UPSTREAM],
        Some(&format!("airlock secret add {staging_secret} --env staging --tier primary --upstream {STAGING_UPSTREAM} < staging-token.txt")),
        Some(&token),
        false,
    )
    .await?;

    println!("\n5. Configure the gateway: the fixture API as two upstreams (production, staging) on one");
    println!("   endpoint, its GraphQL mutations classified, every resource placed by an inventory,");
    println!("   and one operator policy (every destroy waits for a human).");
    let policies = root.join("policies");
    std::fs::create_dir_all(&policies).map_err(io_err("cannot create the policy directory"))?;
    std::fs::write(policies.join("destroy-needs-approval.cedar"), DESTROY_APPROVAL_POLICY).map_err(io_err("cannot write the policy"))?;
    let prod_secret_name = if prod_secret.is_empty() { "railway_token".to_owned() } else { prod_secret.clone() };
    if a.disable_protections {
        println!("   (--disable-protections: the built-in policies are switched off and no operator policy is loaded)");
    }
    let cfg = config_text(&api2, &fixture_ca, gateway, admin, (!a.disable_protections).then_some(policies.as_path()), &prod_secret_name, staging_secret);
    std::fs::write(&config, &cfg).map_err(io_err("cannot write airlock.toml"))?;
    println!("    {} (abridged):", config.display());
    for l in cfg.lines().filter(|l| !l.starts_with('#')).take(32) {
        println!("      {l}");
    }
    println!("      … (the same operations for {STAGING_UPSTREAM}; an [[inventory]] entry per volume and backup)");
    let o = air.run(&["serve", "--check"], None, None, false).await?;
    if o.code != 0 {
        return Err(Failure::internal("airlock serve --check refused the demo configuration (see above)"));
    }

    println!("\n6. Start the gateway. Agents reach it as an HTTPS proxy (HTTPS_PROXY); it terminates TLS");
    println!("   with a local airlock CA, decides, audits, and only then injects the real token.");
    let serve = Serve::start(&air, gateway).await?;

    println!("\n7. Run the same agent under airlock: staging task, read and destroy grants on the staging");
    println!("   upstream. Only its environment differs from run 1: `airlock run` points HTTPS_PROXY at the");
    println!("   gateway, makes it trust the airlock CA, and its {} is a task token, worthless outside", airlock_fixture::agent::TOKEN_VAR);
    println!("   the gateway.");
    let mut extra = sandbox.0.clone();
    let exe_dir = exe.parent().filter(|_| !sandbox.1);
    if let Some(dir) = exe_dir {
        extra.extend(["--allow-read".into(), dir.display().to_string()]);
    }
    let mut args = run_args(&extra);
    args.extend(["--".into(), exe.display().to_string(), "__demo-agent".into(), "--workspace".into(), ws2.display().to_string(), "--api".into(), api2.clone()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = air.command(&refs);
    c.current_dir(&ws2);
    let exe_dir = exe_dir.map(|d| format!(" --allow-read {}", d.display())).unwrap_or_default();
    shown(&display.replace(" -- airlock", &format!("{exe_dir} -- airlock")));
    if !exe_dir.is_empty() {
        println!("    (--allow-read lets the sandboxed agent execute this airlock binary, which is the agent here)");
    }
    let out = air.finish(&mut c, None, true).await?;
    indent(&out.stderr);
    let r2 = AgentReport::parse(&out.stdout, String::new(), out.code);
    r2.print();
    if out.code != 0 {
        println!("    (airlock run exited with {})", out.code);
    }
    let task_id = out
        .stderr
        .lines()
        .find_map(|l| l.split_once("started task ").map(|(_, r)| r.split_whitespace().next().unwrap_or_default().to_owned()))
        .unwrap_or_default();

    println!("\n8. A human sees the pending destroy:");
    let _ = air.run(&["approvals", "list"], None, None, false).await;
    serve.stop().await;

    // ---------------------------------------------------------------- verdict
    heading("What held");
    let w2 = &fixture2.world;
    let code_of = |action: &str, target: &str| r2.step(action, target).map(|s| (s.ok, outcome_of(s)));
    let has_code = |s: Option<(bool, String)>, code: &str| s.as_ref().is_some_and(|(ok, d)| !ok && d.starts_with(code));
    checks.check(
        "the agent found no usable token in its workspace; it got a task token instead",
        r2.found.as_deref() == Some(&format!("${}", airlock_fixture::agent::TOKEN_VAR)),
        format!("token source: {}", r2.found.as_deref().unwrap_or("none")),
    );
    let list = r2.step("list volumes", "");
    checks.check(
        "staging reads pass through the gateway",
        list.is_some_and(|s| s.ok),
        list.map(|s| format!("list volumes → {}", s.status)).unwrap_or_else(|| "no read was made".into()),
    );
    let prod_del = code_of("volumeDelete", "vol-prod-db");
    checks.check(
        "deleting the production volume is denied as cross-environment",
        has_code(prod_del.clone(), "cross_environment"),
        prod_del.map(|(_, d)| d).unwrap_or_else(|| "not attempted".into()),
    );
    let stg_del = code_of("volumeDelete", "vol-staging-db");
    checks.check(
        "deleting the staging volume waits for a human approval",
        has_code(stg_del.clone(), "approval_required"),
        stg_del.map(|(_, d)| d).unwrap_or_else(|| "not attempted".into()),
    );
    let stg_bkp = code_of("backupDelete", "bkp-staging-db-1");
    let backups: Vec<&Step> = r2.steps.iter().filter(|s| s.action == "backupDelete").collect();
    checks.check(
        "deleting a backup is refused by the backup/primary separation rule",
        has_code(stg_bkp.clone(), "backup_separation") && backups.iter().all(|s| !s.ok),
        backups.iter().map(|s| format!("{}: {}", s.target, outcome_of(s))).collect::<Vec<_>>().join("; "),
    );
    let prod_ok =
        w2.volumes().iter().any(|v| v.id == "vol-prod-db") && ["bkp-prod-db-1", "bkp-prod-db-2"].iter().all(|id| w2.backups().iter().any(|b| b.id == *id));
    let reached: Vec<String> = w2.requests().iter().filter(|r| r.body.contains("Delete")).map(|r| r.body.clone()).collect();
    checks.check(
        "nothing in production is lost (fixture state checked)",
        prod_ok && w2.destroyed().is_empty(),
        format!(
            "volumes: {}; backups: {}; destroyed: {}",
            w2.volumes().iter().map(|v| v.id.as_str()).collect::<Vec<_>>().join(", "),
            w2.backups().iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(", "),
            if w2.destroyed().is_empty() { "none".to_owned() } else { w2.destroyed().join(", ") }
        ),
    );
    checks.check("no delete request reached the cloud API at all", reached.is_empty(), format!("{} delete request(s) arrived", reached.len()));
    let authed = w2.requests().iter().all(|r| r.headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {token}")));
    checks.check(
        "the real token was added by the gateway, never held by the agent",
        !w2.requests().is_empty() && authed && !out.stdout.contains(&token),
        format!("{} request(s) reached the API, each with the injected token", w2.requests().len()),
    );
    checks.check(
        "the task ended when the agent exited: its token is revoked",
        out.stderr.contains("token is revoked"),
        if task_id.is_empty() { String::new() } else { format!("task {task_id}") },
    );

    // ---------------------------------------------------------------- audit
    heading("The audit trail of the run");
    let mut audit_args = vec!["audit", "list", "--json", "--limit", "200"];
    if !task_id.is_empty() {
        audit_args.extend(["--task", task_id.as_str()]);
    }
    let display = format!("airlock audit list --task {task_id}");
    let o = air.run(&audit_args, Some(&display), None, true).await?;
    let entries: Vec<Value> = serde_json::from_str(&o.stdout).unwrap_or_default();
    print_audit(&entries);
    if o.code != 0 {
        indent(&o.stderr);
    }
    let v = air.run(&["audit", "verify"], None, None, false).await?;
    checks.check(
        "the audit trail has the run's decisions and its hash chain verifies",
        v.code == 0 && !entries.is_empty(),
        format!("{} record(s) for the task", entries.len()),
    );

    heading("Result");
    let failed = checks.failed();
    println!("Took {:.1} s.", started.elapsed().as_secs_f64());
    if sandbox.1 {
        println!("Note: the agent ran without the Landlock sandbox (--no-sandbox); on this machine it could have read your credential files.");
    }
    if a.keep {
        let kept = tmp.keep();
        println!("Everything is kept in {} (state/, airlock.toml, run1/, run2/).", kept.display());
    }
    drop(fixture2);
    if failed.is_empty() {
        println!("Every protection held. Production, and its backups, are still there.");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(exit::FAILED, "protection_failed", format!("{} protection(s) did not hold: {}", failed.len(), failed.join("; "))))
    }
}

/// What a step's answer was, for the verdict: the refusal code, or that it went through.
fn outcome_of(s: &Step) -> String {
    if s.ok { format!("ALLOWED ({} {})", s.status, if s.action.ends_with("Delete") { "destroyed" } else { "ok" }) } else { s.detail.clone() }
}

/// `--no-sandbox` when asked for or when the kernel has no Landlock (said out loud).
fn sandbox_flag(asked: bool) -> (Vec<String>, bool) {
    if asked {
        println!("   (--no-sandbox: the agent runs without the Landlock sandbox)");
        return (vec!["--no-sandbox".into()], true);
    }
    let support = airlock_run::sandbox::probe();
    match support.abi {
        Some(_) => (Vec::new(), false),
        None => {
            println!("   (this kernel has no usable Landlock, so the agent runs with --no-sandbox; everything");
            println!("    else below is unchanged, but on such a machine the agent could read ~/.aws and the like)");
            (vec!["--no-sandbox".into()], true)
        }
    }
}

fn print_audit(entries: &[Value]) {
    println!("    {:>4} {:<12} {:<26} {:<8} {:<30} detail", "seq", "time", "action", "outcome", "subject");
    for e in entries {
        let d = &e["detail"];
        let get = |k: &str| d.get(k).filter(|v| !v.is_null()).map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        let mut what = Vec::new();
        if let Some(code) = get("code") {
            // The first clause of the reason names the resource and the rule.
            let reason = get("reason").unwrap_or_default();
            let first = reason.split("; ").next().unwrap_or_default().split(". ").next().unwrap_or_default().to_owned();
            what.push(format!("{code}: {first}"));
        } else if e["action"] == "gateway.approval_requested" {
            what.push(format!("approval {} for {}", get("approval_id").unwrap_or_default(), get("resource").unwrap_or_default()));
        } else {
            for k in ["resource", "status", "exit_code", "program"] {
                if let Some(v) = get(k) {
                    what.push(format!("{k}={v}"));
                }
            }
        }
        let ts = e["ts_ms"].as_i64().unwrap_or(0);
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000_000)
            .map(|t| format!("{:02}:{:02}:{:02}.{:03}", t.hour(), t.minute(), t.second(), t.millisecond()))
            .unwrap_or_default();
        let subject = e["subject"].as_str().unwrap_or_default();
        // Task ids are long; the heading already names the task.
        let subject = if subject.len() == 36 && subject.chars().filter(|c| *c == '-').count() == 4 { "(this task)" } else { subject };
        println!(
            "    {:>4} {:<12} {:<26} {:<8} {:<30} {}",
            e["seq"].as_i64().unwrap_or(0),
            time,
            e["action"].as_str().unwrap_or_default(),
            e["outcome"].as_str().unwrap_or_default(),
            subject,
            what.join(" ")
        );
    }
}
