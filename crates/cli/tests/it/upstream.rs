//! `airlock upstream add/list`, where the configuration is looked up, and grants checked
//! against it by `airlock task start`.

use crate::Sandbox;

const KEPT: &str = "# my rules — keep this comment\n[gateway]\nlisten = \"127.0.0.1:7700\"  # trailing comment\n";

#[test]
fn add_appends_a_preset_keeps_the_file_and_refuses_duplicates() {
    let s = Sandbox::new();
    let cfg = s.dir.path().join("airlock.toml");
    std::fs::write(&cfg, KEPT).unwrap();
    let c = cfg.to_str().unwrap();
    let r = s.run(&["upstream", "add", "anthropic", "--env", "staging", "--secret", "anthropic-key", "--config", c]).ok();
    assert!(r.stdout.contains("--grant anthropic:model"), "{}", r.stdout);
    assert!(r.stdout.contains("ANTHROPIC_BASE_URL") && r.stdout.contains("airlock secret add anthropic-key"), "{}", r.stdout);
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.starts_with(KEPT), "{text}");
    assert!(text.contains("[[upstream]]\npreset = \"anthropic\"\nenvironment = \"staging\"\nsecret = \"anthropic-key\"\n"), "{text}");

    // The same name again is refused, and the file is untouched.
    s.run(&["upstream", "add", "anthropic", "--env", "production", "--secret", "k2", "--config", c]).fails(2, "already has an upstream named \"anthropic\"");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    // Another name is fine.
    s.run(&["upstream", "add", "openai", "--env", "production", "--secret", "oai-prod", "--name", "openai-prod", "--config", c]).ok();
    // An unknown preset names the known ones and the near miss.
    let r = s.run(&["upstream", "add", "antropic", "--env", "staging", "--secret", "k", "--config", c]).fails(2, "did you mean \"anthropic\"");
    assert!(r.stderr.contains("anthropic, openai"), "{}", r.stderr);
    // A bad value is caught by the real loader, with the line of the new block.
    s.run(&["upstream", "add", "openai", "--env", "Staging", "--secret", "k", "--config", c]).fails(2, "invalid environment");

    let r = s.run(&["upstream", "list", "--json", "--config", c]).ok();
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows[0]["name"], "anthropic");
    assert_eq!(rows[0]["preset"], "anthropic");
    assert_eq!(rows[0]["base_url"], "https://api.anthropic.com");
    assert_eq!(rows[0]["secret"], "anthropic-key");
    assert_eq!(rows[0]["capabilities"], serde_json::json!(["read", "write", "destroy", "model"]));
    assert_eq!(rows[1]["name"], "openai-prod");
    assert_eq!(rows[1]["environment"], "production");
    let r = s.run(&["upstream", "list", "--config", c]).ok();
    assert!(r.stdout.contains("anthropic") && r.stdout.contains("openai-prod") && r.stdout.contains("https://api.openai.com/v1"), "{}", r.stdout);
}

#[test]
fn default_config_lives_in_the_state_dir_never_the_working_directory() {
    let s = Sandbox::new();
    s.init();
    // A config in the working directory (the agent's workspace) is not read, and says so.
    std::fs::write(s.work().join("airlock.toml"), "[[upstream]]\npreset = \"openai\"\nenvironment = \"staging\"\nsecret = \"x\"\n").unwrap();
    let r = s.run(&["upstream", "list"]).fails(2, "no configuration found");
    assert!(r.stderr.contains("is not read") && r.stderr.contains(&s.home().join("airlock.toml").display().to_string()), "{}", r.stderr);
    assert_eq!(r.stderr.lines().filter(|l| l.starts_with("warning:")).count(), 1, "one warning line: {}", r.stderr);

    // `upstream add` without --config creates <state dir>/airlock.toml, which is then used.
    s.run(&["upstream", "add", "anthropic", "--env", "staging", "--secret", "anthropic-key"]).ok();
    assert!(s.home().join("airlock.toml").is_file());
    let r = s.run(&["upstream", "list", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()[0]["name"], "anthropic");

    // Grants are checked against it.
    s.run(&["task", "start", "--agent", "claude", "--env", "staging", "--grant", "anthropic:model"]).ok();
    let r = s.run(&["task", "start", "--agent", "claude", "--env", "staging", "--grant", "anthropic:modle"]).fails(2, "did you mean \"model\"");
    assert!(r.stderr.contains("--grant anthropic:model"), "{}", r.stderr);
    let r = s.run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "anthropc:read"]).fails(2, "no upstream named \"anthropc\"");
    assert!(r.stderr.contains("did you mean \"anthropic\"") && r.stderr.contains("--grant anthropic:read"), "{}", r.stderr);
    s.run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "nosuch:read"]).fails(2, "no upstream named \"nosuch\"");
    s.run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "anthropic:reed"]).fails(2, "did you mean \"read\"");
    let r = s.run(&["task", "list", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap().as_array().unwrap().len(), 1, "refused grants start no task");
}

#[test]
fn without_a_config_grants_are_not_checked_but_warned_about() {
    let s = Sandbox::new();
    s.init();
    let r = s.run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "nosuch:read"]).ok();
    assert!(r.stderr.contains("warning: no configuration found") && r.stderr.contains("not checked"), "{}", r.stderr);
}

#[test]
fn add_refuses_a_config_inside_a_git_work_tree() {
    let s = Sandbox::new();
    let repo = s.dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let cfg = repo.join("airlock.toml");
    s.run(&["upstream", "add", "anthropic", "--env", "staging", "--secret", "k", "--config", cfg.to_str().unwrap()]).fails(2, "git work tree");
    assert!(!cfg.exists());
}
