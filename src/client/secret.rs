//! [`Secret`]: a string that never shows itself in logs, errors or `Debug` output.
//!
//! Passwords, OAuth tokens and the like travel through the config and client
//! layers wrapped in this type. Its `Debug` and `Display` print a fixed
//! placeholder, so a `{:?}` of any config or settings struct that holds one is
//! safe to log. Only [`Secret::expose`] gives the text, at the one place that
//! puts it on the wire.

use std::fmt;

/// A secret string: redacted in `Debug` and `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret text. Call it only where the value is sent or hashed, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(s.expose(), "hunter2");
        for shown in [format!("{s:?}"), format!("{s}"), format!("{:#?}", Some(&s))] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
