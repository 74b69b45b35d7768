//! The `[source.tls]`, `[source.sasl]` (and `[destination.*]`) tables: TLS and
//! SASL settings of a cluster, and where secrets come from.
//!
//! Secrets (passwords, tokens) may be inline, in an environment variable
//! (`password_env`) or in a file (`password_file`); they are read when the config
//! is loaded, except `token_file`, which is read again at every
//! (re-)authentication so a refreshed token is picked up. Secrets are held as
//! [`Secret`]s and never appear in `Debug` output, logs or errors, including
//! TOML syntax errors that quote the line they were found on.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use crate::client::tls::Tls;
use crate::client::{SaslMechanism, SaslSettings, Secret, TlsSettings, TokenSource};

/// `[<cluster>.tls]`: TLS to the brokers. The table's presence turns TLS on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Use TLS (default true when the table is present).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// PEM file with the CA certificate(s) that sign the brokers' certificates.
    /// Unset: the system CA bundle (`$SSL_CERT_FILE`, `/etc/ssl/certs/ca-certificates.crt`, ...).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, leaf first (mTLS; with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (unencrypted PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Name every broker certificate is verified against, instead of the host
    /// each broker advertises (which may be an IP address).
    pub server_name: Option<String>,
    /// Accept any broker certificate. Insecure; a warning is logged at every start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn enabled_default() -> bool {
    true
}

impl TlsConfig {
    /// Client-layer settings, `None` when `enabled = false`.
    pub fn settings(&self) -> Option<TlsSettings> {
        self.enabled.then(|| TlsSettings {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name: self.server_name.clone(),
            insecure_skip_verify: self.insecure_skip_verify,
        })
    }
}

/// `[<cluster>.sasl]`: SASL authentication of every connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `"PLAIN"`, `"SCRAM-SHA-256"`, `"SCRAM-SHA-512"` or `"OAUTHBEARER"`.
    pub mechanism: Spanned<SaslMechanism>,
    /// User name (PLAIN and SCRAM).
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// Password, inline (PLAIN and SCRAM). Prefer `password_env` or `password_file`.
    pub password: Option<Spanned<Secret>>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<Spanned<String>>,
    /// File holding the password (a trailing newline is ignored).
    pub password_file: Option<Spanned<PathBuf>>,
    /// OAUTHBEARER token (a JWT), inline.
    pub token: Option<Spanned<Secret>>,
    /// Name of the environment variable holding the token.
    pub token_env: Option<Spanned<String>>,
    /// File holding the token, read again at every (re-)authentication.
    pub token_file: Option<Spanned<PathBuf>>,
    /// The settings with secrets resolved, filled in by validation.
    #[serde(skip)]
    pub(crate) resolved: Option<SaslSettings>,
}

type Invalid<'a> = &'a dyn Fn(Range<usize>, &str, String) -> ConfigError;

fn read_env(var: &Spanned<String>, key: &str, invalid: Invalid<'_>) -> Result<Secret, ConfigError> {
    match std::env::var(var.get_ref()) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        Ok(_) => Err(invalid(
            var.span(),
            key,
            format!("names ${}, which is empty", var.get_ref()),
        )),
        Err(_) => Err(invalid(
            var.span(),
            key,
            format!("names ${}, which is not set", var.get_ref()),
        )),
    }
}

fn read_file(path: &Spanned<PathBuf>, key: &str, invalid: Invalid<'_>) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path.get_ref()).map_err(|e| {
        invalid(
            path.span(),
            key,
            format!("cannot be read ({}): {e}", path.get_ref().display()),
        )
    })?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(invalid(
            path.span(),
            key,
            format!("{} is empty", path.get_ref().display()),
        ));
    }
    Ok(Secret::new(text))
}

/// Checks the `tls` and `sasl` tables of cluster `name` and resolves secrets.
pub(super) fn validate(
    name: &str,
    tls: Option<&Spanned<TlsConfig>>,
    sasl: Option<&mut SaslConfig>,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    if let Some(t) = tls {
        if let Some(settings) = t.get_ref().settings() {
            // Reads the CA, certificate and key files now, so a bad path or a key
            // that does not fit its certificate is a config error, not a runtime one.
            Tls::new(&settings).map_err(|e| invalid(t.span(), &format!("{name}.tls"), format!("is invalid: {e}")))?;
        }
    }
    let Some(s) = sasl else { return Ok(()) };
    let mech = *s.mechanism.get_ref();
    let key = |k: &str| format!("{name}.sasl.{k}");
    let one_of = |span: Range<usize>, keys: &str, found: usize| -> Result<(), ConfigError> {
        match found {
            1 => Ok(()),
            0 => Err(invalid(
                span,
                &key("mechanism"),
                format!("is {} and needs one of {keys}", mech.name()),
            )),
            _ => Err(invalid(
                span,
                &key("mechanism"),
                format!("is {} and takes only one of {keys}", mech.name()),
            )),
        }
    };
    let mut settings = SaslSettings {
        mechanism: mech,
        username: String::new(),
        password: Secret::default(),
        token: None,
    };
    match mech {
        SaslMechanism::OAuthBearer => {
            let found = [s.token.is_some(), s.token_env.is_some(), s.token_file.is_some()];
            one_of(
                s.mechanism.span(),
                "token, token_env, token_file",
                found.iter().filter(|b| **b).count(),
            )?;
            if let Some(p) = &s.password {
                return Err(invalid(
                    p.span(),
                    &key("password"),
                    "is not used by OAUTHBEARER; set token, token_env or token_file".into(),
                ));
            }
            settings.token = Some(if let Some(t) = &s.token {
                TokenSource::Fixed(t.get_ref().clone())
            } else if let Some(v) = &s.token_env {
                TokenSource::Fixed(read_env(v, &key("token_env"), invalid)?)
            } else if let Some(f) = &s.token_file {
                // Read once now so a wrong path fails at startup; read again at every authentication.
                read_file(f, &key("token_file"), invalid)?;
                TokenSource::File(f.get_ref().clone())
            } else {
                unreachable!("one_of checked that a token source is set")
            });
        }
        _ => {
            let user = s.username.as_ref().filter(|u| !u.get_ref().is_empty()).ok_or_else(|| {
                invalid(
                    s.mechanism.span(),
                    &key("username"),
                    format!("is required for {}", mech.name()),
                )
            })?;
            settings.username = user.get_ref().clone();
            let found = [
                s.password.is_some(),
                s.password_env.is_some(),
                s.password_file.is_some(),
            ];
            one_of(
                s.mechanism.span(),
                "password, password_env, password_file",
                found.iter().filter(|b| **b).count(),
            )?;
            if let Some(t) = s
                .token
                .as_ref()
                .map(|t| t.span())
                .or(s.token_file.as_ref().map(|t| t.span()))
            {
                return Err(invalid(
                    t,
                    &key("token"),
                    format!("is only used by OAUTHBEARER, not {}", mech.name()),
                ));
            }
            settings.password = if let Some(p) = &s.password {
                p.get_ref().clone()
            } else if let Some(v) = &s.password_env {
                read_env(v, &key("password_env"), invalid)?
            } else if let Some(f) = &s.password_file {
                read_file(f, &key("password_file"), invalid)?
            } else {
                unreachable!("one_of checked that a password source is set")
            };
        }
    }
    s.resolved = Some(settings);
    Ok(())
}

/// A TOML error message with the values of secret keys blanked out: the parser
/// quotes the offending line, which may be `password = "..."`.
pub(super) fn redact(message: &str) -> String {
    // A quoted source line ("  9 | password = ...") whose key looks like a secret's,
    // misspellings included ("pasword", "tokn").
    let secret_line = |l: &str| {
        let Some((_, src)) = l.split_once(" | ") else {
            return false;
        };
        let Some((key, _)) = src.split_once('=') else {
            return false;
        };
        let key = key.to_ascii_lowercase();
        ["pas", "pw", "tok", "secret", "cred"].iter().any(|k| key.contains(k))
    };
    if !message.lines().any(secret_line) {
        return message.to_string();
    }
    message
        .lines()
        .map(|l| {
            if secret_line(l) {
                match l.split_once('=') {
                    Some((k, _)) => format!("{k}= <redacted>"),
                    None => l.to_string(),
                }
            } else if l.contains('`') {
                // "invalid type: integer `123`": the value again.
                let mut out = String::new();
                for (i, part) in l.split('`').enumerate() {
                    out.push_str(if i % 2 == 1 { "<redacted>" } else { part });
                }
                out
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use crate::client::{SaslMechanism, TokenSource};

    fn with(tables: &str) -> String {
        format!(
            "name = \"t\"\n[source]\nbootstrap_servers = \"127.0.0.1:9092\"\n[destination]\nbootstrap_servers = \"127.0.0.1:9093\"\n{tables}"
        )
    }

    #[test]
    fn sasl_password_from_inline_env_and_file() {
        let c = Config::parse(
            &with(
                "[destination.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"alice\"\npassword = \"pw-inline-1\"\n",
            ),
            "t",
        )
        .unwrap();
        let s = c.destination.client_config().sasl.unwrap();
        assert_eq!(s.mechanism, SaslMechanism::ScramSha512);
        assert_eq!((s.username.as_str(), s.password.expose()), ("alice", "pw-inline-1"));
        assert!(c.source.client_config().sasl.is_none());
        assert!(
            !format!("{c:?}").contains("pw-inline-1"),
            "Debug of the config shows the password"
        );

        let var = format!("STRAIT_TEST_PW_{}", std::process::id());
        std::env::set_var(&var, "pw-from-env-2");
        let c = Config::parse(
            &with(&format!(
                "[source.sasl]\nmechanism = \"PLAIN\"\nusername = \"bob\"\npassword_env = \"{var}\"\n"
            )),
            "t",
        )
        .unwrap();
        assert_eq!(
            c.source.client_config().sasl.unwrap().password.expose(),
            "pw-from-env-2"
        );
        std::env::remove_var(&var);
        let e = Config::parse(
            &with(&format!(
                "[source.sasl]\nmechanism = \"PLAIN\"\nusername = \"bob\"\npassword_env = \"{var}\"\n"
            )),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("source.sasl.password_env") && e.contains("not set") && e.contains("line 9"),
            "{e}"
        );

        let f = std::env::temp_dir().join(format!("strait-pw-{}", std::process::id()));
        std::fs::write(&f, "pw-from-file-3\n").unwrap();
        let c = Config::parse(
            &with(&format!(
                "[source.sasl]\nmechanism = \"SCRAM-SHA-256\"\nusername = \"bob\"\npassword_file = \"{}\"\n",
                f.display()
            )),
            "t",
        )
        .unwrap();
        assert_eq!(
            c.source.client_config().sasl.unwrap().password.expose(),
            "pw-from-file-3"
        );
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn sasl_mistakes_name_key_and_line() {
        let cases = [
            ("mechanism = \"GSSAPI\"\n", "GSSAPI"),
            ("mechanism = \"PLAIN\"\npassword = \"x\"\n", "username"),
            ("mechanism = \"PLAIN\"\nusername = \"u\"\n", "needs one of password"),
            (
                "mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"x\"\npassword_env = \"Y\"\n",
                "only one of",
            ),
            ("mechanism = \"OAUTHBEARER\"\n", "token, token_env, token_file"),
            (
                "mechanism = \"OAUTHBEARER\"\ntoken_file = \"/nonexistent/token\"\n",
                "token_file",
            ),
        ];
        for (table, want) in cases {
            let e = Config::parse(&with(&format!("[source.sasl]\n{table}")), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("line "), "{table:?}: {e}");
        }
    }

    #[test]
    fn oauth_token_file_is_kept_as_a_path() {
        let f = std::env::temp_dir().join(format!("strait-tok-{}", std::process::id()));
        std::fs::write(&f, "a.b.").unwrap();
        let c = Config::parse(
            &with(&format!(
                "[source.sasl]\nmechanism = \"OAUTHBEARER\"\ntoken_file = \"{}\"\n",
                f.display()
            )),
            "t",
        )
        .unwrap();
        assert_eq!(
            c.source.client_config().sasl.unwrap().token,
            Some(TokenSource::File(f.clone()))
        );
        std::fs::remove_file(&f).unwrap();
    }

    #[test]
    fn syntax_errors_never_quote_a_password() {
        for table in [
            "mechanism = \"PLAIN\"\nusername = \"u\"\npasword = \"hunter2-secret\"\n",
            "mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"hunter2-secret\n",
        ] {
            let e = Config::parse(&with(&format!("[source.sasl]\n{table}")), "t")
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2-secret") && e.contains("line"), "{e}");
        }
    }

    #[test]
    fn tls_table_turns_tls_on_and_files_are_checked() {
        let c = Config::parse(&with("[source.tls]\ninsecure_skip_verify = true\n"), "t").unwrap();
        assert!(c.source.client_config().tls.is_some_and(|t| t.insecure_skip_verify));
        let c = Config::parse(
            &with("[source.tls]\nenabled = false\nca_file = \"/nonexistent\"\n"),
            "t",
        )
        .unwrap();
        assert!(c.source.client_config().tls.is_none());
        let e = Config::parse(&with("[destination.tls]\nca_file = \"/nonexistent/ca.pem\"\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("destination.tls") && e.contains("/nonexistent/ca.pem") && e.contains("line 6"),
            "{e}"
        );
        let e = Config::parse(&with("[source.tls]\nca_flie = \"x\"\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca_flie") && e.contains("line 7"), "{e}");
    }
}

#[cfg(test)]
mod example_tests {
    use super::super::{Config, EXAMPLE};

    /// Every key the shipped example shows (commented out) in its TLS and SASL
    /// tables is accepted.
    #[test]
    fn example_security_tables_parse_when_uncommented() {
        let var = format!("STRAIT_EXAMPLE_PW_{}", std::process::id());
        std::env::set_var(&var, "x");
        let mut text = String::new();
        let mut in_block = false;
        for line in EXAMPLE.lines() {
            if line.starts_with("# [source.tls]") || line.starts_with("# [source.sasl]") {
                in_block = true;
            }
            if in_block && line.starts_with("# ") && !line.starts_with("# For ") && !line.starts_with("# every ") {
                text.push_str(&line[2..].replace("enabled = true", "enabled = false"));
            } else {
                in_block &= line.starts_with('#');
                text.push_str(line);
            }
            text.push('\n');
        }
        let text = text.replace("STRAIT_EAST_PASSWORD", &var);
        assert!(
            text.contains("\n[source.sasl]\nmechanism = \"SCRAM-SHA-512\""),
            "{text}"
        );
        let c = Config::parse(&text, "example").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let s = c.source.client_config().sasl.unwrap();
        assert_eq!((s.username.as_str(), s.password.expose()), ("strait", "x"));
        assert!(c.source.client_config().tls.is_none(), "enabled = false");
        assert!(c.source.tls.is_some());
    }
}
