//! A change set's origin names what produced it; a directory run's names its source, so
//! that approving a held run can read that directory again.

/// The origin of a run's change set (and of a held one), which names its source.
pub fn run_origin(source: &str) -> String {
    format!("{RUN_ORIGIN}{source}")
}

/// The directory source a change set's origin names, if it is a directory run's.
pub fn source_of_origin(origin: &str) -> Option<&str> {
    origin.strip_prefix(RUN_ORIGIN)
}

const RUN_ORIGIN: &str = "LDAP run of ";
