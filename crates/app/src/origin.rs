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

/// The origin of a change set the deletion guard held for a portal connector.
pub fn connector_origin(connector: &str) -> String {
    format!("{CONNECTOR_ORIGIN}{connector}")
}

/// The connector a change set's origin names, if the guard held it for one.
pub fn connector_of_origin(origin: &str) -> Option<&str> {
    origin.strip_prefix(CONNECTOR_ORIGIN)
}

const CONNECTOR_ORIGIN: &str = "disables by connector ";
