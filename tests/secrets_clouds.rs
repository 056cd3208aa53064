//! GCP Secret Manager and Azure Key Vault references through `kiln env`, against the testkit
//! emulators over real HTTP: the token comes from the metadata emulator (GCE's default service
//! account, Azure's managed identity) and the store accepts only the tokens it issued.

use std::path::Path;
use std::process::{Command, Output};
use testkit::emulator::gcp_secret_manager::{GcpSecretManager, PROJECT_ID};
use testkit::emulator::key_vault::KeyVault;
use testkit::emulator::metadata::{Cloud, MetadataEmulator, Options};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// `kiln env --write-to DIR` with `config`; the output and the env file's text.
fn kiln_env(dir: &Path, config: &str) -> (Output, String) {
    let path = dir.join("kiln.toml");
    std::fs::write(&path, config).unwrap();
    let out_dir = dir.join("out");
    let out = Command::new(KILN)
        .args([
            "env",
            "--config",
            path.to_str().unwrap(),
            "--write-to",
            out_dir.to_str().unwrap(),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .unwrap();
    let env = std::fs::read_to_string(out_dir.join("env")).unwrap_or_default();
    (out, env)
}

/// `[metadata]` at the emulator and `[secrets]` with `secrets` inside.
fn config(emulator: &MetadataEmulator, secrets: &str) -> String {
    format!(
        "{}\n[secrets]\n{secrets}\n[control]\nsocket = \"/run/kiln-test-unused.sock\"\n",
        emulator.config_section("deadline = \"5s\"\nrequest_timeout = \"1s\"")
    )
}

/// The line of `kiln env`'s listing for `name` says `source`.
fn listed_as(out: &Output, name: &str, source: &str) -> bool {
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        l.split_once(' ')
            .is_some_and(|(n, rest)| n == name && rest.trim_start() == source)
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn gcp_secret_manager_references_resolve_with_the_service_account_token() {
    let user_data = format!(
        "DATABASE_URL=gcp:projects/{PROJECT_ID}/secrets/db-url\n\
         API_KEY=gcp:secretmanager:projects/{PROJECT_ID}/secrets/api-key/versions/1\n\
         GREETING=plain, not a reference\n"
    );
    let gce = MetadataEmulator::start(Options::new(Cloud::Gce).user_data(user_data));
    let store = GcpSecretManager::start(gce.access_tokens());
    store.add_version("db-url", "postgres://old-gcp-value");
    store.add_version("db-url", "postgres://gcp-db-value");
    store.add_version("api-key", "gcp-api-key-v1");
    store.add_version("api-key", "gcp-api-key-v2");
    let dir = tempfile::tempdir().unwrap();
    let secrets = format!("gcp_endpoint = {:?}", store.url());
    let (out, env) = kiln_env(dir.path(), &config(&gce, &secrets));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        env.contains("DATABASE_URL=\"postgres://gcp-db-value\"\n"),
        "{env}"
    );
    assert!(env.contains("API_KEY=\"gcp-api-key-v1\"\n"), "{env}");
    assert!(env.contains("GREETING=\"plain, not a reference\"\n"), "{env}");
    let source = format!("secret (gcp:projects/{PROJECT_ID}/secrets/db-url)");
    assert!(listed_as(&out, "DATABASE_URL", &source), "{}", text(&out));
    assert!(listed_as(&out, "GREETING", "user-data"), "{}", text(&out));
    assert!(
        !text(&out).contains("gcp-db-value"),
        "a value in kiln env's output: {}",
        text(&out)
    );
    // One token for both secrets, and every store request carried a token it issued.
    assert_eq!(gce.access_tokens().issued(), 1);
    assert!(
        store.log().iter().all(|(_, status)| *status == 200),
        "{:?}",
        store.log()
    );
    assert_eq!(store.log().len(), 2);
}

#[test]
fn gcp_errors_name_the_variable_the_reference_and_the_status() {
    let user_data = format!(
        "DATABASE_URL=gcp:projects/{PROJECT_ID}/secrets/missing\nAPI_KEY=gcp:projects/{PROJECT_ID}/secrets/denied\n"
    );
    let gce = MetadataEmulator::start(Options::new(Cloud::Gce).user_data(user_data));
    let store = GcpSecretManager::start(gce.access_tokens());
    store.add_version("denied", "never-shown-gcp-secret");
    store.deny("denied");
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln_env(
        dir.path(),
        &config(&gce, &format!("gcp_endpoint = {:?}", store.url())),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(env.is_empty(), "an env file was written: {env}");
    assert!(
        said.contains("secret DATABASE_URL (gcp:projects/kiln-test/secrets/missing)"),
        "{said}"
    );
    assert!(said.contains("NOT_FOUND"), "{said}");
    assert!(
        said.contains("secret API_KEY (gcp:projects/kiln-test/secrets/denied)"),
        "{said}"
    );
    assert!(said.contains("PERMISSION_DENIED"), "{said}");
    assert!(!said.contains("never-shown-gcp-secret"), "{said}");

    // No service account on the instance: the token step says so.
    let mut options =
        Options::new(Cloud::Gce).user_data(format!("X=gcp:projects/{PROJECT_ID}/secrets/denied\n"));
    options.identity = false;
    let gce = MetadataEmulator::start(options);
    let (out, _) = kiln_env(
        dir.path(),
        &config(&gce, &format!("gcp_endpoint = {:?}", store.url())),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no service account"), "{said}");
}

/// A store that answers 503 until the deadline: the refusal names that answer, not the deadline
/// alone, and says how many attempts were made.
#[test]
fn a_store_that_keeps_failing_is_refused_at_the_deadline_with_its_last_answer() {
    let (_store, addr) = testkit::server::Background::spawn(
        "unavailable-store",
        || std::net::TcpListener::bind("127.0.0.1:0"),
        |listener| async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut request = vec![0u8; 64 * 1024];
                    let _ = stream.read(&mut request).await;
                    let answer =
                        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.read_to_end(&mut request).await;
                });
            }
        },
    )
    .unwrap();
    let user_data = format!("DATABASE_URL=gcp:projects/{PROJECT_ID}/secrets/db\n");
    let gce = MetadataEmulator::start(Options::new(Cloud::Gce).user_data(user_data));
    let config = format!(
        "{}\n[secrets]\ngcp_endpoint = \"http://{addr}\"\n[control]\nsocket = \"/run/kiln-test-unused.sock\"\n",
        gce.config_section("deadline = \"2s\"\nrequest_timeout = \"1s\"")
    );
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln_env(dir.path(), &config);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(env.is_empty(), "{env}");
    assert!(
        said.contains(&format!(
            "secret DATABASE_URL (gcp:projects/{PROJECT_ID}/secrets/db): gcp GET http://{addr}/v1/projects/{PROJECT_ID}/secrets/db/versions/latest:access: answered 503 (gave up at the deadline after "
        )),
        "{said}"
    );
}

#[test]
fn key_vault_references_resolve_with_the_managed_identity_token() {
    let tokens = testkit::emulator::metadata::AccessTokens::default();
    let vault = KeyVault::start("kiln-test", tokens.clone());
    vault.set("db-url", "mysql://azure-db-value");
    let v1 = vault.set("api-key", "azure-key-v1");
    vault.set("api-key", "azure-key-v2");
    let azure = MetadataEmulator::start(
        Options::new(Cloud::Azure)
            .user_data(format!(
                "DATABASE_URL=keyvault:kiln-test/db-url\n\
                 OLD_KEY=keyvault:https://kiln-test.vault.azure.net/secrets/api-key/{v1}\n\
                 API_KEY=keyvault:kiln-test/api-key\n"
            ))
            .with_access_tokens(tokens),
    );
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = kiln_env(
        dir.path(),
        &config(&azure, &format!("keyvault_endpoint = {:?}", vault.url())),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.contains("DATABASE_URL=\"mysql://azure-db-value\"\n"), "{env}");
    assert!(env.contains("OLD_KEY=\"azure-key-v1\"\n"), "{env}");
    assert!(env.contains("API_KEY=\"azure-key-v2\"\n"), "{env}");
    assert!(
        vault
            .log()
            .iter()
            .all(|(uri, status)| *status == 200 && uri.contains("api-version=7.4"))
    );
    assert!(
        listed_as(&out, "API_KEY", "secret (keyvault:kiln-test/api-key)"),
        "{}",
        text(&out)
    );
    assert_eq!(azure.access_tokens().issued(), 1);
}

#[test]
fn key_vault_errors_name_the_variable_and_the_code() {
    let azure = MetadataEmulator::start(
        Options::new(Cloud::Azure).user_data("A=keyvault:kiln-test/missing\nB=keyvault:kiln-test/denied\n"),
    );
    let vault = KeyVault::start("kiln-test", azure.access_tokens());
    vault.set("denied", "never-shown-azure-secret");
    vault.deny("denied");
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = kiln_env(
        dir.path(),
        &config(&azure, &format!("keyvault_endpoint = {:?}", vault.url())),
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("secret A (keyvault:kiln-test/missing)"), "{said}");
    assert!(said.contains("SecretNotFound"), "{said}");
    assert!(said.contains("secret B (keyvault:kiln-test/denied)"), "{said}");
    assert!(said.contains("Forbidden"), "{said}");
    assert!(!said.contains("never-shown-azure-secret"), "{said}");
}

#[test]
fn without_a_secrets_section_a_reference_is_plain_text() {
    let gce = MetadataEmulator::start(
        Options::new(Cloud::Gce).user_data(format!("X=gcp:projects/{PROJECT_ID}/secrets/db-url\n")),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[control]\nsocket = \"/run/kiln-test-unused.sock\"\n",
        gce.config_section("deadline = \"5s\"")
    );
    let (out, env) = kiln_env(dir.path(), &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        env.contains(&format!("X=\"gcp:projects/{PROJECT_ID}/secrets/db-url\"\n")),
        "{env}"
    );
    assert_eq!(gce.access_tokens().issued(), 0, "a token was asked for");
}
