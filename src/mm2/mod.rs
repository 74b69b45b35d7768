//! `strait import-mm2`: a MirrorMaker 2 configuration turned into a strait
//! config, with a report that names every input key and what became of it.
//!
//! Two inputs: a dedicated-mode properties file (`connect-mirror-maker.properties`,
//! KIP-382; read by [`properties`]) and a Strimzi `KafkaMirrorMaker2` resource
//! ([`strimzi`], which restates it as the same keys). [`convert`] resolves
//! them the way `MirrorMakerConfig` does (global keys, `A.` cluster keys,
//! `A->B.` flow keys), writes MM2's defaults where strait's differ
//! (`MirrorSourceConfig`, `MirrorCheckpointConfig`, `DefaultTopicFilter`,
//! `DefaultGroupFilter`, `MirrorHeartbeatConfig`), and [`emit`] writes the TOML.
//! Nothing is dropped silently: a key is converted, or reported as not needed,
//! unsupported or unknown. What cannot be translated faithfully (a replication
//! policy strait cannot name, an exclude regex the `regex` crate lacks) fails
//! the import instead of widening what is replicated.

mod convert;
mod emit;
mod engine;
mod keys;
mod properties;
mod regex;
mod security;
mod strimzi;

use std::fmt;

/// Why an import wrote no config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    /// Neither an MM2 properties file nor a `KafkaMirrorMaker2` resource.
    #[error("{file}: not a MirrorMaker 2 config: {reason}")]
    NotMm2 { file: String, reason: String },
    /// A key whose value cannot be converted faithfully.
    #[error("{file}, line {line}: `{key}`: {problem}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        problem: String,
    },
    /// The config as a whole describes nothing strait can run.
    #[error("{file}: {problem}")]
    Incomplete { file: String, problem: String },
}

/// What the report says of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportKind {
    /// Written into the strait config.
    Converted,
    /// MM2 needs it, strait does not (the message says why).
    NotNeeded,
    /// It means something strait cannot do as written: act on it.
    Unsupported,
    /// Not a key MM2 knows either (a typo?): check it.
    Unknown,
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Converted => "converted",
            Self::NotNeeded => "not needed",
            Self::Unsupported => "unsupported",
            Self::Unknown => "unknown",
        })
    }
}

/// One line of the report: a key of the input (or an MM2 default) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub kind: ReportKind,
    /// Line of the input, `None` for an MM2 default that no line sets.
    pub line: Option<usize>,
    /// The input key (`A->B.topics`; for Strimzi, the resource path).
    pub key: String,
    pub message: String,
}

impl ReportLine {
    /// Whether the operator must act on it (unsupported or unknown).
    pub fn needs_action(&self) -> bool {
        matches!(self.kind, ReportKind::Unsupported | ReportKind::Unknown)
    }
}

impl fmt::Display for ReportLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}: line {l}: {}: {}", self.kind, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.kind, self.key, self.message),
        }
    }
}

/// A converted config and its report.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The strait TOML config.
    pub toml: String,
    /// Every input key, in input order, then MM2 defaults written out.
    pub report: Vec<ReportLine>,
}

/// Converts MM2 config text; `file_name` names it in the header and in errors.
/// YAML holding `kind: KafkaMirrorMaker2` is read as a Strimzi resource,
/// anything else as a properties file.
pub fn import(text: &str, file_name: &str) -> Result<Imported, ImportError> {
    let input = if strimzi::looks_like(text) {
        strimzi::read(text, file_name)?
    } else {
        convert::Input::from_properties(text)
    };
    let model = convert::convert(input, file_name)?;
    let toml = emit::toml(&model, file_name);
    Ok(Imported {
        toml,
        report: model.report,
    })
}

/// Reads `path` and converts it (see [`import`]).
pub fn import_file(path: &std::path::Path) -> Result<Imported, ImportError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    import(&text, &name)
}
