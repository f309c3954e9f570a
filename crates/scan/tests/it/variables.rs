//! A value assigned to a credential-named variable is a finding whatever its shape, in
//! the files whose purpose is to hand values to programs; placeholders and references
//! are not, and neither is the same line in ordinary source.

use airlock_scan::Scanner;

const UUID: &str = "3f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9";

/// Rule ids found in `text` scanned as `path` by the built-in rules.
fn rules_at(path: &str, text: &str) -> Vec<String> {
    Scanner::builtin().unwrap().scan_bytes(path, text.as_bytes()).into_iter().map(|f| f.rule).collect()
}

#[test]
fn a_uuid_under_a_credential_name_is_one_finding_in_every_context() {
    let cases = [
        (".env", format!("CLOUD_TOKEN={UUID}\n")),
        ("app/.env.production", format!("API_TOKEN=\"{UUID}\"\n")),
        ("deploy/prod.env", format!("# rotated monthly\nCLOUD_API_KEY={UUID}\n")),
        (".envrc", format!("export CLOUD_TOKEN={UUID}\n")),
        ("home/.bashrc", format!("alias ll='ls -l'\nexport CLOUD_TOKEN={UUID}\n")),
        ("scripts/release.sh", format!("#!/bin/sh\nCLOUD_SECRET={UUID} ./upload\n")),
        (".github/workflows/deploy.yml", format!("jobs:\n  deploy:\n    env:\n      CLOUD_TOKEN: {UUID}\n    steps:\n      - run: ./deploy\n")),
        (".gitlab-ci.yml", format!("variables:\n  CLOUD_TOKEN: \"{UUID}\"\n")),
        ("docker-compose.yml", format!("services:\n  app:\n    environment:\n      - CLOUD_TOKEN={UUID}\n")),
        ("compose.prod.yaml", format!("services:\n  app:\n    environment:\n      CLOUD_PASSWORD: {UUID}\n")),
        ("Dockerfile", format!("FROM alpine\nENV CLOUD_TOKEN={UUID}\n")),
        ("build/api.Dockerfile", format!("FROM alpine\nARG CLOUD_ACCESS_KEY={UUID}\n")),
    ];
    for (path, text) in &cases {
        let got = rules_at(path, text);
        assert_eq!(got.len(), 1, "{path}: exactly one finding (no generic duplicate), got {got:?}");
        assert!(got[0].starts_with("credential-variable-"), "{path}: {got:?}");
        let f = &Scanner::builtin().unwrap().scan_bytes(path, text.as_bytes())[0];
        assert_eq!(f.secret.expose(), UUID, "{path}: the value, not the name or quotes");
        assert_eq!(f.confidence, airlock_scan::Confidence::Medium, "{path}: medium refuses a run");
    }
}

#[test]
fn placeholders_references_and_file_names_are_not_findings() {
    let values = [
        "",
        "${CLOUD_TOKEN}",
        "$CLOUD_TOKEN",
        "\"${CLOUD_TOKEN:-}\"",
        "<your-token>",
        "your_token_here",
        "changeme",
        "xxxxxxxxxxxxxxxx",
        "TODO",
        "dummy-token",
        "test_token_1",
        "example-cloud-token",
        "airlock://staging/cloud",
        "op://Private/Cloud/token",
        "vault:secret/data/cloud#token",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cloud-x1Y2z3",
        "/run/secrets/cloud_token",
        "./secrets/token.txt",
        "https://vault.internal.net/v1/cloud",
        "$(cat /run/secrets/t)",
        "00000000-0000-0000-0000-000000000000",
        "REPLACE_ME",
    ];
    for v in values {
        for (path, text) in [
            (".env", format!("CLOUD_TOKEN={v}\n")),
            ("docker-compose.yml", format!("    environment:\n      - CLOUD_TOKEN={v}\n")),
            (".github/workflows/ci.yml", format!("    env:\n      CLOUD_TOKEN: {v}\n")),
        ] {
            // (generic-secret, not this rule, still reads `secret:cloud-x1Y2z3` inside the ARN)
            let got: Vec<String> = rules_at(path, &text).into_iter().filter(|r| !v.starts_with("arn:") || r != "generic-secret").collect();
            assert!(got.is_empty(), "{path}: {text:?} gave {got:?}");
        }
    }
    for (path, text) in [
        (".github/workflows/ci.yml", "    env:\n      CLOUD_TOKEN: ${{ secrets.CLOUD_TOKEN }}\n    with:\n      token: ${{ github.token }}\n"),
        (
            ".env",
            "CLOUD_TOKEN_TTL=3600\nCLOUD_TOKEN_URL=https://auth.example.net/token\nDB_SECRET_NAME=prod-db\nDB_PASSWORD_FILE=/run/secrets/db\nSESSION_TOKEN=true\n",
        ),
        (".env", "AWS_ACCESS_KEY_ID_HINT=see-the-wiki\nPWD=/home/dev/work\n"),
        ("docker-compose.yml", "    environment:\n      POSTGRES_PASSWORD: postgres\n      POSTGRES_PASSWORD_FILE: /run/secrets/pg\n"),
    ] {
        let got = rules_at(path, text);
        assert!(got.is_empty(), "{path}: {text:?} gave {got:?}");
    }
}

#[test]
fn a_specific_rule_wins_and_ordinary_source_is_left_to_the_generic_rules() {
    // A GitHub token under GITHUB_TOKEN is reported as what it is.
    let got = rules_at(".env", "GITHUB_TOKEN=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\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("github"), "{got:?}");
    // The same UUID assignment in source code or docs is not this rule's business (code is
    // full of UUIDs under names like request_token).
    for path in ["src/config.py", "README.md", "config/settings.yml"] {
        let got = rules_at(path, &format!("CLOUD_TOKEN={UUID}\n"));
        assert!(!got.iter().any(|r| r.starts_with("credential-variable-")), "{path}: {got:?}");
    }
}
