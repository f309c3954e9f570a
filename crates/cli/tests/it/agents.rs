//! Real agents under `airlock run` (issue 10): a Node program installed under a fake
//! `~/.nvm` and a Python program in a venv under `$HOME` start with the user's own
//! installation, call an Anthropic-shaped TLS fixture through the gateway with their task
//! token (the SSE answer streamed and the echoed key redacted), write to their agent home
//! and `git commit` in the workspace with the user's `~/.gitconfig`.

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use airlock_fixture::anthropic::{Options, STREAMED_TEXT, Threaded};

use crate::Sandbox;
use crate::serve::{Gateway, free_port};

const KEY: &str = "sk-ant-REAL-agent-fixture-key-0123456789";

fn exe(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An installation with the model preset pointed at the fixture, a gateway, and a fake home.
struct Setup {
    s: Sandbox,
    cfg: PathBuf,
    model: Threaded,
    _gw: Gateway,
    home: PathBuf,
    _home_dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let model = Threaded::start(Options::new(KEY).echoing()).unwrap();
    let s = Sandbox::new();
    s.init();
    let etc = s.dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let ca = etc.join("model-ca.pem");
    std::fs::write(&ca, &model.ca_pem).unwrap();
    let (listen, admin) = (free_port(), free_port());
    let cfg = etc.join("airlock.toml");
    std::fs::write(&cfg, format!("[gateway]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n")).unwrap();
    s.run(&["upstream", "add", "anthropic", "--env", "staging", "--secret", "anthropic-key", "--config", cfg.to_str().unwrap()]).ok();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!("base_url = \"{}\"\nca_file = \"{}\"\n", model.base_url(), ca.display());
    std::fs::write(&cfg, text).unwrap();
    s.run_stdin(&["secret", "add", "anthropic-key", "--env", "staging", "--upstream", "anthropic"], KEY).ok();
    let gw = Gateway::start(&s, &cfg, listen);
    // Under /var/tmp like a real home, outside the agent's private /tmp (which would hide it).
    let home_dir = tempfile::Builder::new().prefix("airlock-test-home-").tempdir_in("/var/tmp").unwrap();
    let home = home_dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".aws/credentials"), "[default]\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzAGENTSSECRET\n").unwrap();
    std::fs::write(home.join(".gitconfig"), "[user]\n\tname = Dev Eloper\n\temail = dev@example.com\n[credential]\n\thelper = store\n").unwrap();
    Setup { s, cfg, model, _gw: gw, home, _home_dir: home_dir }
}

impl Setup {
    fn run(&self, agent: &str, path: &str, program: &str) -> crate::Run {
        let mut c = self.s.cmd(&["run", "--env", "staging", "--grant", "anthropic:model", "--agent", agent, "--", program]);
        c.env("HOME", &self.home).env("PATH", path).env("AIRLOCK_CONFIG", &self.cfg);
        self.s.run_with(c, None)
    }

    fn check(&self, r: &crate::Run, agent: &str, marker: &str) {
        let all = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        assert_eq!(r.code, 0, "{all}");
        assert!(r.stdout.contains(&STREAMED_TEXT.concat()), "the streamed answer: {all}");
        assert!(!r.stdout.contains(KEY) && !r.stderr.contains(KEY), "the real key reached the agent: {all}");
        assert!(r.stdout.contains(&"*".repeat(KEY.len())), "the echoed key is masked: {all}");
        assert!(r.stdout.contains("aws: denied"), "the user's credential files stay hidden: {all}");
        // It wrote to its own home, which persists in the state directory.
        let note = self.s.home().join("agents").join(agent).join("home").join(marker);
        assert_eq!(std::fs::read_to_string(&note).unwrap_or_default(), "remembered\n", "{all}");
        // The fixture saw the real key, never the task token.
        assert!(self.model.requests().iter().all(|q| q.headers.iter().any(|(k, v)| k == "x-api-key" && v == KEY)));
        // The commit carries the identity from the user's ~/.gitconfig.
        let log = std::process::Command::new("git").args(["log", "-1", "--format=%an <%ae> %s"]).current_dir(self.s.work()).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&log.stdout).trim(), format!("Dev Eloper <dev@example.com> {agent} commit"), "{all}");
    }
}

#[test]
fn a_node_agent_under_nvm_and_a_python_agent_in_a_venv_start_and_do_their_work() {
    let t = setup();
    // ---- Node, installed the way nvm installs it ----
    let v = t.home.join(".nvm/versions/node/v20.0.0");
    std::fs::create_dir_all(v.join("bin")).unwrap();
    let node = v.join("bin/node");
    if std::fs::hard_link("/usr/bin/node", &node).is_err() {
        std::fs::copy("/usr/bin/node", &node).unwrap();
    }
    exe(
        &v.join("lib/node_modules/fake-agent/cli.js"),
        r#"#!/usr/bin/env node
const fs = require('fs'), os = require('os'), cp = require('child_process');
(async () => {
  try { fs.readFileSync(process.env.TEST_USER_HOME + '/.aws/credentials'); console.log('aws: READ'); } catch (e) { console.log('aws: denied'); }
  console.log('node: ' + process.execPath);
  const r = await fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', {
    method: 'POST',
    headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  let raw = '';
  for await (const chunk of r.body) raw += Buffer.from(chunk).toString();
  let text = '';
  for (const line of raw.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const ev = JSON.parse(line.slice(6));
    if (ev.delta && ev.delta.text) text += ev.delta.text;
  }
  console.log('status ' + r.status + ' text: ' + text);
  console.log('raw: ' + raw.replace(/\n/g, ' '));
  fs.mkdirSync(os.homedir() + '/.fake-agent', { recursive: true });
  fs.writeFileSync(os.homedir() + '/.fake-agent/note', 'remembered\n');
  fs.writeFileSync('node.txt', 'made by node\n');
  cp.execSync('git init -q . && git add node.txt && git commit -q -m "fake-agent commit"', { stdio: 'inherit' });
})().catch((e) => { console.error('agent failed: ' + e); process.exit(1); });
"#,
    );
    symlink("../lib/node_modules/fake-agent/cli.js", v.join("bin/fake-agent")).unwrap();
    let path = format!("{}:/usr/bin:/bin", v.join("bin").display());
    let mut c = t.s.cmd(&["run", "--env", "staging", "--grant", "anthropic:model", "--agent", "fake-agent", "--", "fake-agent"]);
    c.env("HOME", &t.home).env("PATH", &path).env("AIRLOCK_CONFIG", &t.cfg).env("TEST_USER_HOME", &t.home);
    let r = t.s.run_with(c, None);
    t.check(&r, "fake-agent", ".fake-agent/note");
    // The user's own node ran (not /usr/bin/node), and airlock said which root it opened and why.
    assert!(r.stdout.contains(&format!("node: {}", node.display())), "{}", r.stdout);
    assert!(r.stderr.contains(&format!("opened {} (read-only: ", std::fs::canonicalize(&v).unwrap().display())), "{}", r.stderr);

    // ---- Python, in a venv under $HOME ----
    let venv = t.home.join("venvs/aider");
    let st = std::process::Command::new("/usr/bin/python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    assert!(st.success(), "python3 -m venv");
    exe(
        &venv.join("bin/fake-aider"),
        &format!(
            r#"#!{python}
import json, os, subprocess, urllib.request
try:
    open(os.environ["TEST_USER_HOME"] + "/.aws/credentials").read(); print("aws: READ")
except OSError:
    print("aws: denied")
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", method="POST",
    headers={{"x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01", "content-type": "application/json"}},
    data=json.dumps({{"model": "m", "max_tokens": 16, "stream": True, "messages": [{{"role": "user", "content": "hi"}}]}}).encode())
text, raw = "", []
with urllib.request.urlopen(req) as r:
    for line in r:
        line = line.decode()
        raw.append(line.strip())
        if line.startswith("data: "):
            ev = json.loads(line[6:])
            text += ev.get("delta", {{}}).get("text", "")
print("text:", text)
print("raw:", " ".join(raw))
os.makedirs(os.path.expanduser("~/.fake-aider"), exist_ok=True)
open(os.path.expanduser("~/.fake-aider/note"), "w").write("remembered\n")
open("py.txt", "w").write("made by python\n")
subprocess.run(["git", "add", "py.txt"], check=True)
subprocess.run(["git", "commit", "-q", "-m", "fake-aider commit"], check=True)
"#,
            python = venv.join("bin/python").display()
        ),
    );
    let mut c =
        t.s.cmd(&["run", "--env", "staging", "--grant", "anthropic:model", "--agent", "fake-aider", "--", venv.join("bin/fake-aider").to_str().unwrap()]);
    c.env("HOME", &t.home).env("PATH", "/usr/bin:/bin").env("AIRLOCK_CONFIG", &t.cfg).env("TEST_USER_HOME", &t.home);
    let r = t.s.run_with(c, None);
    t.check(&r, "fake-aider", ".fake-aider/note");
    assert!(r.stderr.contains("Python virtual environment"), "{}", r.stderr);
    // A copy of the user's gitconfig, without its credential helper.
    let copy = std::fs::read_to_string(t.s.home().join("agents/fake-aider/home/.gitconfig")).unwrap();
    assert!(copy.contains("Dev Eloper") && !copy.contains("helper"), "{copy}");
    let _ = Setup::run;
}
