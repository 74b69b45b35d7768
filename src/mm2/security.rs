//! A cluster's Kafka client security settings (`security.protocol`,
//! `sasl.*`, `ssl.*`, in their `A.`, `A.admin.`/`A.consumer.`/`A.producer.`
//! and global forms) as strait's `tls` and `sasl` tables. JAAS lines of the
//! PLAIN and SCRAM login modules convert; config-provider references
//! (KIP-297, `${provider:[path:]key}`) convert when they name an environment
//! variable (`EnvVarConfigProvider`) or a file (`DirectoryConfigProvider`).
//! Java key stores are not read: the report gives the command that writes
//! the PEM files strait reads.

use super::convert::Conv;
use super::ReportKind;

/// `[<cluster>.tls]`; `notes` become comments above it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub notes: Vec<String>,
}

/// `[<cluster>.sasl]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sasl {
    pub mechanism: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Security {
    pub tls: Option<Tls>,
    pub sasl: Option<Sasl>,
}

/// The security of cluster `alias`, every key it reads marked in the report.
pub(crate) fn from_props(conv: &mut Conv, alias: &str) -> Security {
    let protocol = conv.client(alias, "security.protocol");
    let p = protocol.map_or("PLAINTEXT".to_string(), |i| conv.value(i).trim().to_ascii_uppercase());
    let (tls, sasl) = match p.as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            if let Some(i) = protocol {
                conv.mark(
                    i,
                    ReportKind::Unsupported,
                    format!("unknown protocol {other}: left as plaintext"),
                );
            }
            (false, false)
        }
    };
    if let Some(i) = protocol {
        conv.mark(i, ReportKind::Converted, format!("{p}: tls and sasl tables of {alias}"));
    }
    let mut out = Security::default();
    if tls {
        out.tls = Some(ssl(conv, alias));
    } else {
        for k in SSL_KEYS {
            if let Some(i) = conv.client(alias, k) {
                conv.mark(
                    i,
                    ReportKind::NotNeeded,
                    format!("security.protocol of {alias} is {p}: MM2 does not use TLS either"),
                );
            }
        }
    }
    if sasl {
        out.sasl = jaas(conv, alias);
    }
    out
}

const SSL_KEYS: &[&str] = &[
    "ssl.truststore.location",
    "ssl.truststore.type",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.keystore.location",
    "ssl.keystore.type",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.endpoint.identification.algorithm",
    "ssl.protocol",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
];

fn ssl(conv: &mut Conv, alias: &str) -> Tls {
    let mut tls = Tls::default();
    let get = |conv: &mut Conv, k: &str| conv.client(alias, k).map(|i| (i, conv.value(i).trim().to_string()));
    let ts_type = get(conv, "ssl.truststore.type");
    let ts_kind = ts_type
        .as_ref()
        .map_or("JKS".to_string(), |(_, v)| v.to_ascii_uppercase());
    if let Some((i, loc)) = get(conv, "ssl.truststore.location") {
        if ts_kind == "PEM" {
            conv.mark(i, ReportKind::Converted, format!("ca_file of {alias}"));
            tls.ca_file = Some(loc);
        } else {
            let pem = format!("{loc}.pem");
            let cmd = store_command(
                &loc,
                &ts_kind,
                &format!("openssl pkcs12 -in {{p12}} -nokeys -out {pem}"),
            );
            conv.mark(
                i,
                ReportKind::Converted,
                format!("ca_file = {pem:?} of {alias}: strait reads PEM; write it with: {cmd}"),
            );
            tls.notes.push(format!("{loc} is {ts_kind}; write {pem} with: {cmd}"));
            tls.ca_file = Some(pem);
        }
    } else {
        tls.notes
            .push("CA: the system bundle, as MM2 used the JVM's default trust store".into());
    }
    if let Some((i, _)) = ts_type {
        conv.mark(i, ReportKind::Converted, format!("ca_file of {alias}"));
    }
    if let Some((i, _)) = get(conv, "ssl.truststore.password") {
        conv.mark(
            i,
            ReportKind::NotNeeded,
            "PEM files have no password (the conversion command asks for it)",
        );
    }
    if let Some((i, _)) = get(conv, "ssl.truststore.certificates") {
        conv.mark(
            i,
            ReportKind::Unsupported,
            format!("inline PEM certificates: write them to a file and set ca_file in the tls table of {alias}"),
        );
    }
    let ks_type = get(conv, "ssl.keystore.type");
    let ks_kind = ks_type
        .as_ref()
        .map_or("JKS".to_string(), |(_, v)| v.to_ascii_uppercase());
    let key_pw = get(conv, "ssl.key.password");
    if let Some((i, loc)) = get(conv, "ssl.keystore.location") {
        if ks_kind == "PEM" {
            conv.mark(i, ReportKind::Converted, format!("cert_file and key_file of {alias}"));
            tls.cert_file = Some(loc.clone());
            tls.key_file = Some(loc.clone());
            if let Some((k, _)) = key_pw {
                conv.mark(k, ReportKind::Unsupported, format!("the key in {loc} is encrypted; strait reads unencrypted keys: openssl pkcs8 -topk8 -nocrypt -in {loc} -out {loc}.key, then key_file = \"{loc}.key\""));
            }
        } else {
            let (cert, key) = (format!("{loc}.crt.pem"), format!("{loc}.key.pem"));
            let cmd = store_command(&loc, &ks_kind, &format!("openssl pkcs12 -in {{p12}} -nokeys -out {cert} && openssl pkcs12 -in {{p12}} -nocerts -nodes -out {key}"));
            conv.mark(
                i,
                ReportKind::Converted,
                format!("cert_file and key_file of {alias}: strait reads PEM; write them with: {cmd}"),
            );
            tls.notes
                .push(format!("{loc} is {ks_kind}; write {cert} and {key} with: {cmd}"));
            tls.cert_file = Some(cert);
            tls.key_file = Some(key);
            if let Some((k, _)) = key_pw {
                conv.mark(
                    k,
                    ReportKind::NotNeeded,
                    "the conversion command writes the key unencrypted (-nodes); protect the file instead",
                );
            }
        }
    } else if let Some((k, _)) = key_pw {
        conv.mark(k, ReportKind::NotNeeded, "no key store");
    }
    if let Some((i, _)) = ks_type {
        conv.mark(i, ReportKind::Converted, format!("cert_file and key_file of {alias}"));
    }
    if let Some((i, _)) = get(conv, "ssl.keystore.password") {
        conv.mark(
            i,
            ReportKind::NotNeeded,
            "PEM files have no password (the conversion command asks for it)",
        );
    }
    for k in ["ssl.keystore.certificate.chain", "ssl.keystore.key"] {
        if let Some((i, _)) = get(conv, k) {
            conv.mark(
                i,
                ReportKind::Unsupported,
                format!("inline PEM: write it to a file and set cert_file and key_file in the tls table of {alias}"),
            );
        }
    }
    if let Some((i, v)) = get(conv, "ssl.endpoint.identification.algorithm") {
        if v.is_empty() {
            conv.mark(i, ReportKind::Unsupported, format!("MM2 skipped host name verification; strait always verifies the host: set server_name in the tls table of {alias} to the name the certificates hold"));
        } else {
            conv.mark(i, ReportKind::Converted, "strait verifies every broker's host name");
        }
    }
    for k in ["ssl.protocol", "ssl.enabled.protocols", "ssl.cipher.suites"] {
        if let Some((i, _)) = get(conv, k) {
            conv.mark(
                i,
                ReportKind::NotNeeded,
                "strait speaks TLS 1.2 and 1.3 with rustls's cipher suites",
            );
        }
    }
    tls
}

/// The command writing a JKS or PKCS12 store's contents as PEM (`{p12}` in
/// `openssl` is replaced by the PKCS12 file).
fn store_command(loc: &str, kind: &str, openssl: &str) -> String {
    if kind == "PKCS12" {
        openssl.replace("{p12}", loc)
    } else {
        let p12 = format!("{loc}.p12");
        format!("keytool -importkeystore -srckeystore {loc} -srcstoretype {kind} -destkeystore {p12} -deststoretype PKCS12 && {}", openssl.replace("{p12}", &p12))
    }
}

/// `sasl.mechanism` and `sasl.jaas.config` as a sasl table.
fn jaas(conv: &mut Conv, alias: &str) -> Option<Sasl> {
    let mech_i = conv.client(alias, "sasl.mechanism");
    let mech = mech_i.map_or("GSSAPI".to_string(), |i| conv.value(i).trim().to_ascii_uppercase());
    let Some(j) = conv.client(alias, "sasl.jaas.config") else {
        let why = format!("SASL {mech} without sasl.jaas.config: add the sasl table of {alias} by hand");
        match mech_i {
            Some(i) => conv.mark(i, ReportKind::Unsupported, why),
            None => conv.note(ReportKind::Unsupported, &format!("{alias}.sasl.jaas.config"), why),
        }
        return None;
    };
    let text = conv.value(j).trim().to_string();
    let unsupported = |conv: &mut Conv, why: String| {
        conv.mark(j, ReportKind::Unsupported, why);
        if let Some(i) = mech_i {
            conv.mark(i, ReportKind::NotNeeded, "see sasl.jaas.config");
        }
        None
    };
    if text.starts_with("${") {
        return unsupported(
            conv,
            format!(
                "the JAAS line comes from a config provider strait cannot read: add the sasl table of {alias} by hand"
            ),
        );
    }
    let (module, options) = match parse_jaas(&text) {
        Ok(x) => x,
        Err(e) => return unsupported(conv, format!("cannot read the JAAS line: {e}")),
    };
    let simple = module.rsplit('.').next().unwrap_or_default();
    let mechanism = match simple {
        "PlainLoginModule" if mech == "PLAIN" || mech_i.is_none() => "PLAIN".to_string(),
        "ScramLoginModule" if mech == "SCRAM-SHA-256" || mech == "SCRAM-SHA-512" => mech.clone(),
        "PlainLoginModule" | "ScramLoginModule" => return unsupported(conv, format!("{module} does not fit sasl.mechanism {mech}")),
        "OAuthBearerLoginModule" => return unsupported(conv, format!("login module {module}: strait's OAUTHBEARER sends a token it reads (token_file, refreshed by another process); it fetches none itself: set mechanism = \"OAUTHBEARER\" and token_file in the sasl table of {alias}")),
        _ => return unsupported(conv, format!("login module {module} (SASL {mech}): strait supports PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER")),
    };
    let mut sasl = Sasl {
        mechanism,
        ..Sasl::default()
    };
    let mut notes = Vec::new();
    for (k, v) in options {
        match k.as_str() {
            "username" => sasl.username = Some(v),
            "password" => match provider_ref(conv, &v) {
                Some(Ok(Secret::Env(var))) => sasl.password_env = Some(var),
                Some(Ok(Secret::File(f))) => sasl.password_file = Some(f),
                Some(Err(why)) => return unsupported(conv, why),
                None => {
                    notes.push(
                        "the password is inline, as in the MM2 file: prefer password_file or password_env".to_string(),
                    );
                    sasl.password = Some(v);
                }
            },
            other => notes.push(format!("option {other} has no strait equivalent")),
        }
    }
    let mut msg = format!("sasl table of {alias} ({})", sasl.mechanism);
    for n in notes {
        msg.push_str("; ");
        msg.push_str(&n);
    }
    conv.mark(j, ReportKind::Converted, msg);
    if let Some(i) = mech_i {
        conv.mark(i, ReportKind::Converted, format!("mechanism of {alias}"));
    }
    for k in [
        "sasl.login.callback.handler.class",
        "sasl.client.callback.handler.class",
    ] {
        if let Some(i) = conv.client(alias, k) {
            conv.mark(
                i,
                ReportKind::Unsupported,
                "custom SASL callback class: strait cannot run it",
            );
        }
    }
    Some(sasl)
}

enum Secret {
    Env(String),
    File(String),
}

/// `${env:VAR}` / `${dir:/path:file}` → a secret strait reads; another
/// provider → why not; not a reference → `None`.
fn provider_ref(conv: &mut Conv, v: &str) -> Option<Result<Secret, String>> {
    let inner = v.strip_prefix("${")?.strip_suffix('}')?;
    let (name, rest) = inner.split_once(':')?;
    let class_i = conv.find(&format!("config.providers.{name}.class"));
    let class = class_i.map_or(String::new(), |i| conv.value(i).trim().to_string());
    let kind = match class.rsplit('.').next().unwrap_or_default() {
        "" => name.to_string(),
        "EnvVarConfigProvider" => "env".into(),
        "DirectoryConfigProvider" => "dir".into(),
        "FileConfigProvider" => "file".into(),
        other => other.to_string(),
    };
    let result = match kind.as_str() {
        "env" => Ok(Secret::Env(rest.rsplit(':').next().unwrap_or(rest).to_string())),
        "dir" => match rest.rsplit_once(':') {
            Some((dir, file)) => Ok(Secret::File(format!("{}/{file}", dir.trim_end_matches('/')))),
            None => Err(format!("`{v}`: a DirectoryConfigProvider reference needs a directory and a file")),
        },
        _ => Err(format!("password `{v}` from config provider {name} ({}): strait reads a password from a file holding it alone (password_file) or a variable (password_env)", if class.is_empty() { "no class" } else { &class })),
    };
    if let Some(i) = class_i {
        conv.mark(i, ReportKind::Converted, "the password's config provider");
    }
    for k in ["config.providers"] {
        if let Some(i) = conv.find(k) {
            conv.mark(i, ReportKind::Converted, "the password's config provider");
        }
    }
    Some(result)
}

/// `module flag key="value" key=value ...;`
fn parse_jaas(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let s = s.trim().trim_end_matches(';').trim();
    let mut parts = s.splitn(3, char::is_whitespace);
    let module = parts
        .next()
        .filter(|m| !m.is_empty())
        .ok_or("no login module")?
        .to_string();
    let flag = parts.next().ok_or("no control flag (required)")?;
    if !["required", "requisite", "sufficient", "optional"].contains(&flag) {
        return Err(format!("`{flag}` is not a control flag"));
    }
    let rest: Vec<char> = parts.next().unwrap_or("").chars().collect();
    let mut opts = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        if rest[i].is_whitespace() {
            i += 1;
            continue;
        }
        let k_start = i;
        while i < rest.len() && rest[i] != '=' {
            i += 1;
        }
        let key: String = rest[k_start..i].iter().collect::<String>().trim().to_string();
        if i >= rest.len() {
            return Err(format!("option `{key}` has no value"));
        }
        i += 1;
        let mut value = String::new();
        if rest.get(i) == Some(&'"') {
            i += 1;
            while i < rest.len() && rest[i] != '"' {
                if rest[i] == '\\' && i + 1 < rest.len() {
                    i += 1;
                }
                value.push(rest[i]);
                i += 1;
            }
            if i >= rest.len() {
                return Err(format!("option `{key}`: unclosed quote"));
            }
            i += 1;
        } else {
            while i < rest.len() && !rest[i].is_whitespace() {
                value.push(rest[i]);
                i += 1;
            }
        }
        opts.push((key, value));
    }
    Ok((module, opts))
}

#[cfg(test)]
mod tests {
    #[test]
    fn jaas_lines() {
        let (m, o) = super::parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="mm2" password="p\"w d";"#,
        )
        .unwrap();
        assert_eq!(m, "org.apache.kafka.common.security.scram.ScramLoginModule");
        assert_eq!(
            o,
            vec![("username".into(), "mm2".into()), ("password".into(), "p\"w d".into())]
        );
        let (_, o) = super::parse_jaas("a.B required user=x;").unwrap();
        assert_eq!(o, vec![("user".into(), "x".into())]);
        assert!(super::parse_jaas("a.B maybe;").is_err());
        assert!(super::parse_jaas(r#"a.B required p="x"#).is_err());
    }
}
