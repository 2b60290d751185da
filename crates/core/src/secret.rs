//! Secrets idbridge *uses* (IdP client secrets, bind passwords, webhook and portal
//! secrets) are never in configuration or the database: a setting names a file or an
//! environment variable that holds them. One reader for all of them, so that every such
//! setting behaves the same: a file's trailing line break is not part of the secret
//! (editors add one; nothing else is trimmed), and errors name the file or variable,
//! never the value.

/// Why a referenced secret could not be read; the caller names its setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// `*_file`: the file could not be read.
    File { path: String, reason: String },
    /// `*_env`: the variable is not set (or not UTF-8).
    Env { name: String },
}

impl SecretError {
    /// The setting's suffix (`_file`, `_env`) and the reason, for "`prefix_file`: …".
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            Self::File { path, reason } => ("_file", format!("cannot read {path}: {reason}")),
            Self::Env { name } => ("_env", format!("environment variable {name} is not set")),
        }
    }
}

/// Reads the secret from `file` if given, else from the variable `env`; `None` when
/// neither is set.
pub fn read_referenced(file: Option<&str>, env: Option<&str>) -> Result<Option<String>, SecretError> {
    if let Some(path) = file.filter(|p| !p.is_empty()) {
        return std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| SecretError::File { path: path.to_owned(), reason: e.to_string() });
    }
    if let Some(name) = env.filter(|n| !n.is_empty()) {
        return std::env::var(name).map(Some).map_err(|_| SecretError::Env { name: name.to_owned() });
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_loses_its_line_break_only_and_errors_name_the_reference() {
        let dir = std::env::temp_dir().join(format!("idbridge-secret-{}", std::process::id()));
        std::fs::write(&dir, " s3cret \r\n").unwrap();
        let path = dir.display().to_string();
        assert_eq!(read_referenced(Some(&path), Some("IGNORED")).unwrap().as_deref(), Some(" s3cret "));
        std::fs::remove_file(&dir).unwrap();
        let (suffix, reason) = read_referenced(Some(&path), None).unwrap_err().describe();
        assert_eq!(suffix, "_file");
        assert!(reason.contains(&path), "{reason}");
        let missing = read_referenced(None, Some("IDBRIDGE_TEST_SURELY_UNSET_VARIABLE")).unwrap_err();
        assert_eq!(missing.describe().1, "environment variable IDBRIDGE_TEST_SURELY_UNSET_VARIABLE is not set");
        assert_eq!(read_referenced(None, None), Ok(None));
    }
}
